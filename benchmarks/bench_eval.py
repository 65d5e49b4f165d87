"""Eval throughput: our runner at concurrency 1 and 8 against a bare 16-thread requests client.

    just bench-eval                              # the built-in tiny model, baseline suite
    just bench-eval repeats=5 max_tokens=128
    just bench-eval model=mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit suite=suites/mine.toml

One real server, the suite's prompts as the payloads `build_request` makes, the same max_tokens
for every mode. Each mode runs once to warm up (kernels compile on first use, per batch size),
then `repeats` times in rotating order so drift hits every mode alike; the table shows medians,
and ratios are medians of ratios within a repeat. Throughput = completion tokens (the server's
usage) / wall seconds; "client CPU s" is this process's CPU time, the client's own cost. Our
runner writes to a throwaway ledger in a temporary directory, never the user's. The exit code
says whether the measurement ran, not whether the target was met.
"""

import argparse
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from labbench import cli
from labbench.errors import UserError

DEFAULT_SUITE = "baseline"  # a name in suites/ or a path to a .toml file
DEFAULT_REPEATS = 3  # measured runs of each mode; the table shows the median
DEFAULT_MAX_TOKENS = 64  # the same for every prompt and mode, so outputs are comparable
RUNNER_CONCURRENCY = (1, 8)  # our runner's concurrency levels
BARE_THREADS = 16  # the bare client's threads: the reference the runner is held to
# The bare client at the runner's concurrency too: runner@8 against bare@8 is our overhead
# alone, bare@8 against bare@16 is what more requests in flight buy from the server.
BARE_DIAGNOSTIC_THREADS = 8
TARGET_RATIO = 0.9  # runner@8 should reach this share of the bare client's tokens/s
REQUEST_TIMEOUT_S = 300.0  # one answer, as in `just eval`
BARE_RETRIES = 5  # times the bare client tries again after a reset connection
BARE_RETRY_PAUSE_S = 0.05  # its pause before each new try


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Measure eval throughput (completion tokens/s) of our runner and a bare "
        "client on one server.",
        epilog="Make-style key=value words work too: model=PATH repeats=5 max_tokens=128.",
    )
    parser.add_argument("--model", help="model directory or Hugging Face id (default: tiny)")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help="suite name or TOML path")
    parser.add_argument(
        "--repeats", type=int, default=DEFAULT_REPEATS, help="measured runs per mode (median)"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="max_tokens for every prompt"
    )
    parser.add_argument("--port", type=int, help="port for the server (default: a free one)")
    return parser


@dataclass(frozen=True)
class Measurement:
    mode: str
    completion_tokens: int
    seconds: float
    client_cpu_s: float  # CPU time of this process: the client's cost, taken from the server
    resets: int  # connections the server reset (and the client retried)

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds

    def __str__(self) -> str:
        return (
            f"{self.mode}: {self.completion_tokens} tokens in {self.seconds:.2f} s = "
            f"{self.tokens_per_second:.1f} tokens/s (client CPU {self.client_cpu_s:.2f} s, "
            f"{self.resets} resets)"
        )


class CountingSession(requests.Session):
    """Counts the connection errors its posts raise (post_chat then retries them), so resets
    show for our runner as they do for the bare client."""

    def __init__(self) -> None:
        super().__init__()
        self.resets = 0

    def post(self, *args, **kwargs) -> requests.Response:
        try:
            return super().post(*args, **kwargs)
        except requests.ConnectionError:
            self.resets += 1
            raise


def measure_runner(suite, server, sampling, concurrency: int, db) -> Measurement:
    """Our runner as `just eval` uses it: scoring and a ledger row per prompt included."""
    from labbench.evaluation import Endpoint, run_suite
    from labbench.ledger import finish_run, start_run
    from labbench.server import SERVED_MODEL

    session = CountingSession()
    endpoint = Endpoint(server.base_url, SERVED_MODEL, alive=server.alive, session=session)
    run = start_run(db, "eval", {"bench": True}, suite=suite.name)
    started, cpu_started = time.perf_counter(), time.process_time()
    run_suite(run, suite, endpoint, sampling, concurrency)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finish_run(run, "ok")
    rows = list(
        db.query(
            "SELECT prompt_id, error, completion_tokens FROM eval_results WHERE run_id = ?",
            [run.id],
        )
    )
    failed = [row for row in rows if row["error"] is not None]
    if failed:
        raise UserError(
            f"runner@{concurrency}: {len(failed)} of {len(rows)} requests failed "
            f"({failed[0]['prompt_id']}: {failed[0]['error']})"
        )
    tokens = sum(row["completion_tokens"] or 0 for row in rows)
    return Measurement(f"runner@{concurrency}", tokens, seconds, cpu, session.resets)


def measure_bare(url: str, payloads: list[dict], threads: int) -> Measurement:
    """Plain requests from `threads` threads: no scoring, no ledger, one Session per thread.

    mlx_lm.server listens with a backlog of 5, so a burst of connections can be reset; like
    any client that wants its answers, this one tries again, after a short pause.
    """
    todo: queue.SimpleQueue[dict] = queue.SimpleQueue()
    for payload in payloads:
        todo.put(payload)
    tokens: list[int] = []
    resets: list[int] = []
    errors: list[str] = []

    def post(session: requests.Session, payload: dict) -> int:
        for attempt in range(BARE_RETRIES + 1):
            try:
                response = session.post(url, json=payload, timeout=REQUEST_TIMEOUT_S)
            except requests.ConnectionError:
                if attempt == BARE_RETRIES:
                    raise
                resets.append(1)
                time.sleep(BARE_RETRY_PAUSE_S)
                continue
            response.raise_for_status()
            return response.json()["usage"]["completion_tokens"]
        raise AssertionError("unreachable")

    def worker() -> None:
        with requests.Session() as session:
            while not errors:
                try:
                    payload = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    tokens.append(post(session, payload))
                except (requests.RequestException, ValueError, KeyError) as error:
                    errors.append(str(error).splitlines()[0][:200])

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    started, cpu_started = time.perf_counter(), time.process_time()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if errors:
        raise UserError(f"bare@{threads}: {len(errors)} requests failed ({errors[0]})")
    return Measurement(f"bare@{threads}", sum(tokens), seconds, cpu, len(resets))


def rotated(modes: list, repeat: int) -> list:
    """The modes in a different order each repeat, so drift affects them alike."""
    shift = repeat % len(modes)
    return modes[shift:] + modes[:shift]


def paired_ratio(measurements: dict[str, list[Measurement]], mode: str, reference: str) -> float:
    """Median over repeats of mode / reference tokens/s, each pair measured in the same repeat:
    on a shared machine load drifts, and a pair run minutes apart compares the load, not us."""
    pairs = zip(measurements[mode], measurements[reference], strict=True)
    return statistics.median(m.tokens_per_second / r.tokens_per_second for m, r in pairs)


def report(measurements: dict[str, list[Measurement]], reference: str) -> str:
    from tabulate import tabulate

    rows = []
    for mode, runs in measurements.items():
        rates = [m.tokens_per_second for m in runs]
        rows.append(
            [
                mode,
                round(statistics.median(m.completion_tokens for m in runs)),
                f"{statistics.median(m.seconds for m in runs):.2f}",
                f"{statistics.median(rates):.1f}",
                f"{min(rates):.0f}–{max(rates):.0f}",
                f"{paired_ratio(measurements, mode, reference):.2f}x",
                f"{statistics.median(m.client_cpu_s for m in runs):.2f}",
                sum(m.resets for m in runs),
            ]
        )
    headers = ["mode", "completion tokens", "seconds", "tokens/s", "range", f"vs {reference}"]
    headers += ["client CPU s", "resets"]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def main() -> int:
    args = cli.parse_args(build_parser())
    cli.raise_keyboard_interrupt_on_sigterm()
    from labbench.evaluation import Endpoint, SamplingSettings, ServerGone, build_request
    from labbench.ledger import open_ledger
    from labbench.server import SERVED_MODEL, resolve_model, start_server
    from labbench.suite import load_suite

    try:
        if args.repeats < 1:
            raise UserError("--repeats must be at least 1")
        if args.max_tokens < 1:
            raise UserError("--max-tokens must be at least 1")
        suite = load_suite(args.suite)
        model = resolve_model(args.model)
        sampling = SamplingSettings(max_tokens=args.max_tokens)
        with (
            tempfile.TemporaryDirectory(prefix="labbench-bench-eval-") as scratch,
            start_server(model, port=args.port) as server,
        ):
            db = open_ledger(Path(scratch) / "ledger.db")  # throwaway: never the user's
            endpoint = Endpoint(server.base_url, SERVED_MODEL, alive=server.alive)
            payloads = [build_request(suite, p, endpoint, sampling) for p in suite.prompts]
            url = server.base_url + "/v1/chat/completions"
            bare_mode = f"bare@{BARE_THREADS}"
            modes: dict[str, Callable[[], Measurement]] = {
                f"runner@{c}": lambda c=c: measure_runner(suite, server, sampling, c, db)
                for c in RUNNER_CONCURRENCY
            }
            for threads in (BARE_DIAGNOSTIC_THREADS, BARE_THREADS):
                modes[f"bare@{threads}"] = lambda t=threads: measure_bare(url, payloads, t)
            print(
                f"{model} on {server.base_url}: {len(payloads)} prompts from {suite.name}, "
                f"max_tokens={args.max_tokens}, {args.repeats} repeats",
                file=sys.stderr,
            )
            for mode, measure in modes.items():  # warm-up, not measured
                print(f"warm-up {mode}", file=sys.stderr)
                measure()
            measurements: dict[str, list[Measurement]] = {mode: [] for mode in modes}
            for repeat in range(args.repeats):
                for mode in rotated(list(modes), repeat):
                    result = modes[mode]()
                    measurements[mode].append(result)
                    print(f"repeat {repeat + 1}/{args.repeats} {result}", file=sys.stderr)
            db.close()
    except UserError as error:
        cli.fail(str(error))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ServerGone as error:
        cli.fail(str(error))

    print(report(measurements, bare_mode))
    runner_mode = f"runner@{max(RUNNER_CONCURRENCY)}"
    diagnostic = f"bare@{BARE_DIAGNOSTIC_THREADS}"
    print(
        f"{runner_mode} / {diagnostic} = {paired_ratio(measurements, runner_mode, diagnostic):.2f}x"
        " (our overhead alone, at equal concurrency)"
    )
    print(
        f"{runner_mode} / {bare_mode} = {paired_ratio(measurements, runner_mode, bare_mode):.2f}x"
        f" (target >= {TARGET_RATIO}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
