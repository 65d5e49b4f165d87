"""Eval throughput: the default `just eval url=...` against a bare 16-thread requests client.

    just bench-eval                              # the built-in tiny model, baseline suite
    just bench-eval repeats=5 prompts=384
    just bench-eval model=mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit suite=suites/mine.toml
    just bench-eval suite=bfcl prompts=200       # a built-in suite: its first 200 questions

One real server. The suite's prompts are cycled to `prompts` requests (192 by default) and
written to a scratch suite (a built-in suite, humaneval or bfcl..., is not cycled: its first
`prompts` questions, all by default, as `limit=`); `just eval url=... suite=SCRATCH` runs as a
user would type it, as
a subprocess with every default, and its wall clock counts everything: start-up, imports,
suite load, fingerprint, the ledger, the report and the journal. The bare client sends the same
payloads (`build_request` with the default sampling) from 16 threads, one Session each, and
tries a reset connection again after a short pause. Both run once to warm up (kernels compile
per batch size), then `repeats` times in alternating order. Throughput = completion tokens (the
server's usage) / wall seconds; the ratio is the median of the ratios within a repeat, since a
pair measured minutes apart on a shared machine compares the load, not the clients. The eval
writes to a throwaway ledger in a temporary directory. The last line is the ratio; the exit
code says whether the measurement ran, not whether the target was met.
"""

import argparse
import json
import queue
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import requests

from labbench.core import cli
from labbench.core.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomli is installed on 3.10 only: a type check in a 3.11 venv cannot find it
    import tomli as tomllib  # ty: ignore[import-not-found]

DEFAULT_SUITE = "baseline"  # a name in suites/ or a path to a .toml file
DEFAULT_PROMPTS = 192  # requests per measured run: a suite file's prompts, cycled
DEFAULT_REPEATS = 3  # measured runs of each side; the ratio is the median
BARE_THREADS = 16  # the bare client's threads: the reference the default eval is held to
TARGET_RATIO = 1.0  # the default eval should match the bare client
REQUEST_TIMEOUT_S = 300.0  # one answer, as in `just eval`
BARE_RETRIES = 5  # times the bare client tries again after a reset connection
BARE_RETRY_PAUSE_S = 0.05  # its pause before each new try
EVAL_TIMEOUT_S = 1800.0  # one whole `just eval` run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Measure the wall-clock throughput of the default `just eval url=...` "
        "against a bare 16-thread client on one server.",
        epilog="Make-style key=value words work too: model=PATH repeats=5 prompts=384.",
    )
    parser.add_argument("--model", help="model directory or Hugging Face id (default: tiny)")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help="suite name or TOML path")
    parser.add_argument(
        "--prompts",
        type=int,
        help=f"requests per run (a suite file cycled; default {DEFAULT_PROMPTS}; a built-in"
        " suite: its first N, default all)",
    )
    parser.add_argument(
        "--repeats", type=int, default=DEFAULT_REPEATS, help="measured runs per side (median)"
    )
    parser.add_argument("--port", type=int, help="port for the server (default: a free one)")
    return parser


@dataclass(frozen=True)
class Measurement:
    mode: str
    completion_tokens: int
    seconds: float
    detail: str  # what else this side reports: resets, time outside the ledger run

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds

    def __str__(self) -> str:
        return (
            f"{self.mode}: {self.completion_tokens} tokens in {self.seconds:.2f} s = "
            f"{self.tokens_per_second:.1f} tokens/s ({self.detail})"
        )


def _toml_value(value) -> str:
    """TOML for the values a suite holds (JSON strings are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"no TOML for {value!r}")


def write_cycled_suite(source: Path, count: int, target: Path) -> None:
    """A copy of the suite whose prompts are cycled to `count`, each id made unique."""
    with source.open("rb") as file:
        data = tomllib.load(file)
    prompts = data.pop("prompts")
    lines = [f"{key} = {_toml_value(value)}" for key, value in data.items()]
    for n in range(count):
        prompt = dict(prompts[n % len(prompts)])
        prompt["id"] = f"{prompt['id']}-{n // len(prompts)}"
        lines.append("\n[[prompts]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in prompt.items()]
    target.write_text("\n".join(lines) + "\n")


def measure_eval(base_url: str, suite_args: list[str], scratch: Path, n: int) -> Measurement:
    """`just eval url=... suite=...` as a user types it: every other setting its default."""
    from sqlite_utils import Database

    from labbench.train.benchmark import timed_eval

    ledger = scratch / f"eval-{n}" / "ledger.db"
    seconds = timed_eval([f"url={base_url}", *suite_args], ledger, EVAL_TIMEOUT_S)
    db = Database(ledger)
    [run] = list(db.query("SELECT id, duration_s FROM runs"))
    rows = list(db.query("SELECT completion_tokens FROM eval_results"))
    tokens = sum(row["completion_tokens"] or 0 for row in rows)
    db.close()
    # Wall time outside the recorded run: imports, suite load, report and journal writing.
    outside = seconds - (run["duration_s"] or 0)
    return Measurement("default eval", tokens, seconds, f"{outside:.2f} s outside the run")


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
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise UserError(f"bare@{threads}: {len(errors)} requests failed ({errors[0]})")
    return Measurement(f"bare@{threads}", sum(tokens), seconds, f"{len(resets)} resets")


def report(pairs: list[tuple[Measurement, Measurement]]) -> str:
    from tabulate import tabulate

    rows = []
    for n, (ours, bare) in enumerate(pairs, start=1):
        ratio = ours.tokens_per_second / bare.tokens_per_second
        for m in (ours, bare):
            rows.append([n, m.mode, m.completion_tokens, f"{m.seconds:.2f}", m.detail])
            rows[-1].insert(4, f"{m.tokens_per_second:.1f}")
        rows[-2].append(f"{ratio:.2f}x")
    headers = ["repeat", "side", "completion tokens", "seconds", "tokens/s", "detail", "ratio"]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def main() -> int:
    args = cli.parse_args(build_parser())
    cli.raise_keyboard_interrupt_on_sigterm()
    from labbench.eval.prompting import SamplingSettings, build_request
    from labbench.eval.suite import is_built_in, load_suite, resolve_suite_path
    from labbench.serving.chatclient import Endpoint
    from labbench.serving.server import resolve_model, start_server

    try:
        if args.repeats < 1:
            raise UserError("--repeats must be at least 1")
        if args.prompts is not None and args.prompts < 1:
            raise UserError("--prompts must be at least 1")
        built_in = is_built_in(args.suite)
        source = None if built_in else resolve_suite_path(args.suite)
        suite = load_suite(args.suite if built_in else str(source))  # fails before any server
        model = resolve_model(args.model)
        pairs: list[tuple[Measurement, Measurement]] = []
        with (
            tempfile.TemporaryDirectory(prefix="labbench-bench-eval-") as scratch_dir,
            start_server(model, port=args.port) as server,
        ):
            scratch = Path(scratch_dir)
            if source is None:
                limit = args.prompts or len(suite.prompts)
                suite = replace(suite, prompts=suite.prompts[:limit])
                suite_args = [f"suite={args.suite}", f"limit={limit}"]
            else:
                suite_path = scratch / "suite.toml"
                write_cycled_suite(source, args.prompts or DEFAULT_PROMPTS, suite_path)
                suite = load_suite(str(suite_path))
                suite_args = [f"suite={suite_path}"]
            # What the eval sends by default: the suite's max_tokens, temperature 0, no model.
            endpoint = Endpoint(server.base_url, None)
            payloads = [
                build_request(suite, p, endpoint, SamplingSettings()) for p in suite.prompts
            ]
            url = server.base_url + "/v1/chat/completions"
            sides = {
                "eval": lambda n: measure_eval(server.base_url, suite_args, scratch, n),
                "bare": lambda n: measure_bare(url, payloads, BARE_THREADS),
            }
            print(
                f"{model} on {server.base_url}: {len(payloads)} prompts of "
                f"{source.name if source else args.suite}, {args.repeats} repeats",
                file=sys.stderr,
            )
            for side, measure in sides.items():  # warm-up, not measured
                print(f"warm-up {side}: {measure(0)}", file=sys.stderr)
            for repeat in range(1, args.repeats + 1):
                order = ["eval", "bare"] if repeat % 2 else ["bare", "eval"]
                results = {side: sides[side](repeat) for side in order}
                for side in order:
                    print(f"repeat {repeat}/{args.repeats} {results[side]}", file=sys.stderr)
                pairs.append((results["eval"], results["bare"]))
    except UserError as error:
        cli.fail(str(error))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

    print(report(pairs))
    ratios = [ours.tokens_per_second / bare.tokens_per_second for ours, bare in pairs]
    spread = f"{min(ratios):.2f}–{max(ratios):.2f}" if len(ratios) > 1 else "one repeat"
    print(
        f"default eval / bare client throughput: {statistics.median(ratios):.2f}x "
        f"(median of {len(ratios)}, range {spread}, target >= {TARGET_RATIO:g}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
