"""What executing the answers' code costs an eval: the same `just eval` with and without
executed tests (exec=false), on the same server and prompts, one run each; the ratio last.

    just bench-exec                              # HumanEval, replayed answers (see below)
    just bench-exec rate=100 limit=80            # a slower emulated server, the first 80
    just bench-exec model=mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit
    just bench-exec url=http://127.0.0.1:8080/v1 suite=suites/mine.toml

Tests run in a pool while generation goes on, so with a server that takes real time to answer
the eval should take hardly longer (target <= 1.2x). The built-in tiny model writes no code, so
by default the server is a replay server (labbench/serving/replay.py) that answers each HumanEval
problem with its canonical solution as a chat model would (prose around the whole function in
a ```python block) and emulates a server generating `rate` tokens per second in all. Every
answer then runs as code: 164 test processes against generation at that rate. With model= or
url= a real server answers (the model must write code, or nothing runs: the output says how
many answers ran). Each eval is `just eval url=... suite=...` as a user types it, a subprocess
writing to a throwaway ledger; its wall clock counts everything. A short eval runs first to warm
up and is not measured. The exit code says whether the measurement ran, not whether the target
was met.
"""

import argparse
import sys
import tempfile
from collections import Counter
from collections.abc import Generator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from labbench.core import cli
from labbench.core.errors import UserError
from labbench.train.benchmark import timed_eval

DEFAULT_SUITE = "humaneval"  # a name in suites/, a path to a .toml file, or humaneval
DEFAULT_RATE = 400.0  # tokens/s the replay server generates in all (with no model= or url=)
WARMUP_PROMPTS = 8  # prompts in the unmeasured warm-up eval
TARGET_RATIO = 1.2  # an eval with executed tests should take at most this times as long
EVAL_TIMEOUT_S = 3600.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Time the same eval with and without executed tests; the ratio last.",
        epilog="Make-style key=value words work too: rate=100 limit=80 model=PATH.",
    )
    parser.add_argument("--suite", default=DEFAULT_SUITE, help="suite name or TOML path")
    parser.add_argument("--limit", type=int, help="only the suite's first N prompts")
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help="tokens/s the replay server generates in all (HumanEval only)",
    )
    parser.add_argument("--model", help="start mlx_lm.server with this model instead")
    parser.add_argument("--url", help="or evaluate this running OpenAI-compatible server")
    parser.add_argument("--port", type=int, help="port for a started server (default: free)")
    return parser


@dataclass(frozen=True)
class Measurement:
    side: str
    seconds: float
    verdicts: Counter  # tests_verdict -> prompts (None: no tests run)

    def __str__(self) -> str:
        counts = ", ".join(
            f"{n} {v or 'not run'}" for v, n in sorted(self.verdicts.items(), key=str)
        )
        return f"{self.side}: {self.seconds:.2f} s ({counts})"


def measure(base_url: str, suite: str, scratch: Path, side: str, *words: str) -> Measurement:
    """`just eval url=... suite=... WORDS` as a user types it, timed from outside."""
    from sqlite_utils import Database

    ledger = scratch / side / "ledger.db"
    try:
        seconds = timed_eval([f"url={base_url}", f"suite={suite}", *words], ledger, EVAL_TIMEOUT_S)
    except UserError as error:
        raise UserError(f"{side}: {error}") from None
    db = Database(ledger)
    verdicts = Counter(
        row["tests_verdict"] for row in db.query("SELECT tests_verdict FROM eval_results")
    )
    db.close()
    return Measurement(side, seconds, verdicts)


def server_for(args: argparse.Namespace):
    """A context giving the base URL: the user's server, one we start, or the replay server."""
    if args.url is not None:
        from labbench.serving.chatclient import normalize_url

        return nullcontext(normalize_url(args.url))
    if args.model is not None:
        from labbench.serving.server import resolve_model

        return _started(resolve_model(args.model), args.port)
    from labbench.eval.humaneval import canonical_answers
    from labbench.eval.suite import HUMANEVAL
    from labbench.serving.replay import replay_server

    if args.suite != HUMANEVAL:
        raise UserError("--suite: the replay server knows HumanEval only; give --model or --url")
    if args.rate <= 0:
        raise UserError("--rate must be a positive number of tokens per second")
    answers = canonical_answers("whole-function-in-prose")
    return replay_server(lambda variant, question: answers[question], tokens_per_s=args.rate)


@contextmanager
def _started(model: str, port: int | None) -> Generator[str, None, None]:
    from labbench.serving.server import start_server

    with start_server(model, port=port) as server:
        yield server.base_url


def main() -> int:
    args = cli.parse_args(build_parser())
    cli.raise_keyboard_interrupt_on_sigterm()
    from labbench.eval.suite import load_suite

    try:
        if args.limit is not None and args.limit < 1:
            raise UserError("--limit must be at least 1")
        suite = load_suite(args.suite)  # a bad suite fails here, before any server starts
        if all(prompt.expect_tests is None for prompt in suite.prompts):
            raise UserError(f"--suite {args.suite}: no prompt has expect_tests: nothing to run")
        limit = [f"limit={args.limit}"] if args.limit else []
        prompts = len(suite.prompts[: args.limit])
        with (
            tempfile.TemporaryDirectory(prefix="labbench-bench-exec-") as scratch_dir,
            server_for(args) as base_url,
        ):
            scratch = Path(scratch_dir)
            where = args.url or args.model or f"replay server at {args.rate:g} tokens/s"
            print(f"{where}: {prompts} prompts of {suite.name}", file=sys.stderr)
            warmup = measure(base_url, args.suite, scratch, "warm-up", f"limit={WARMUP_PROMPTS}")
            print(f"{warmup} (not measured)", file=sys.stderr)
            without = measure(base_url, args.suite, scratch, "exec=false", *limit, "exec=false")
            print(without, file=sys.stderr)
            executed = measure(base_url, args.suite, scratch, "exec=true", *limit)
            print(executed, file=sys.stderr)
    except UserError as error:
        cli.fail(str(error))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

    ran = sum(
        n for verdict, n in executed.verdicts.items() if verdict not in (None, "no code found")
    )
    print(f"answers run as code: {ran} of {prompts}")
    if ran == 0:
        print("warning: no answer held code, so this measures nothing of executing it")
    print(
        f"eval with executed tests / without: {executed.seconds / without.seconds:.2f}x "
        f"({executed.seconds:.1f} s / {without.seconds:.1f} s, target <= {TARGET_RATIO:g}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
