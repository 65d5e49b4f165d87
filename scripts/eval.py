"""Evaluate a model on a suite through a real mlx_lm.server, and record every result.

just eval                                   # the built-in tiny model, baseline suite
just eval model=mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit adapter=adapters/7
just eval url=http://127.0.0.1:11434/v1 served_model=qwen2.5-coder suite=suites/mine.toml
just eval url=http://127.0.0.1:8080 suite=humaneval limit=20   # the first 20 HumanEval problems
just eval url=http://mac1:8080,http://mac2:8080   # two servers of one model share the prompts
just eval replicas=2                        # two local servers of the model share the prompts
just eval resume=12                         # finish run 12, interrupted or failed
"""

import argparse
import json
import sys
from dataclasses import replace

from labbench.core import cli
from labbench.core.errors import UserError
from labbench.core.settings import EvalSettings, SamplingSettings
from labbench.present import recording

DEFAULTS = EvalSettings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate a model on a suite and record the run in the ledger.",
        epilog="Make-style key=value words work too: model=PATH suite=NAME.",
    )
    parser.add_argument(
        "--model",
        help="model directory or Hugging Face id (default: the adapter's base model, else tiny)",
    )
    parser.add_argument(
        "--adapter", help="LoRA adapter directory, e.g. adapters/7 (runs on its base model)"
    )
    cli.add_allow_other_base(parser)
    parser.add_argument(
        "--suite", default=DEFAULTS.suite, help="suite name, TOML path, or humaneval (built in)"
    )
    parser.add_argument(
        "--url",
        help="evaluate a running OpenAI-compatible server instead: http://HOST:PORT, "
        "http://HOST:PORT/v1 or .../v1/chat/completions (http:// if no scheme is given); "
        "several, comma-separated, share the prompts",
    )
    parser.add_argument("--served-model", help="model name to send to a --url server")
    parser.add_argument(
        "--port", type=cli.port_number, help="port for our server (default: a free one)"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="servers to start for the model; prompts go to the least busy",
    )
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULTS.concurrency, help="requests in flight"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=SamplingSettings.temperature,
        help="sampling temperature",
    )
    parser.add_argument("--max-tokens", type=int, help="override the suite's max_tokens")
    parser.add_argument(
        "--seed",
        type=int,
        help="sampling seed sent with every request (epoch N sends seed + N - 1); "
        "runs with the same seed should score alike",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULTS.epochs,
        help="sample each prompt N times: its score is the mean, and pass@k is reported",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULTS.request_timeout_s, help="seconds per request"
    )
    parser.add_argument(
        "--limit", type=int, help="run only the suite's first N prompts (a quick look)"
    )
    parser.add_argument(
        "--exec",
        type=cli.boolean,
        metavar="true|false",
        help="run the suite's expect_tests on the answers' code (default: the suite's `exec`,"
        " else true); false leaves prompts scored only by tests unscored",
    )
    parser.add_argument(
        "--resume",
        type=int,
        metavar="RUN",
        help="finish this interrupted or failed eval run: only the prompts without a result are"
        " asked, if its model, adapter, suite file and sampling settings are unchanged",
    )
    cli.add_run_args(parser)
    return parser


# What a resume may be given besides the run: none of them changes a score.
RESUME_FLAGS = {"--resume", "--ledger", "--concurrency", "--timeout", "--port"}


def check_args(args: argparse.Namespace) -> None:
    if args.url is not None and (args.model or args.adapter or args.port or args.allow_other_base):
        raise UserError(
            "--url evaluates a running server: --model, --adapter, --port,"
            " --allow-other-base don't apply"
        )
    if args.replicas < 1:
        raise UserError("--replicas must be at least 1")
    if args.url is not None and args.replicas > 1:
        raise UserError("--replicas starts servers: with --url, list them comma-separated")
    if args.served_model and args.url is None:
        raise UserError("--served-model goes with --url")
    if args.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UserError("--max-tokens must be at least 1")
    if args.temperature < 0:
        raise UserError("--temperature must be at least 0")
    if args.epochs < 1:
        raise UserError("--epochs must be at least 1")
    if args.seed is not None and args.seed < 0:
        raise UserError("--seed must be at least 0")
    if args.timeout <= 0:
        raise UserError("--timeout must be a positive number of seconds")
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")


def bfcl_tables(db, run_id: int, summaries: dict) -> str:
    from labbench.core.formatting import terminal_table
    from labbench.present.bfcltables import error_kinds, summary_rows

    rows = summary_rows(summaries) or [["(none: the run lacks a category of each)", "", ""]]
    text = "\n" + terminal_table(rows, ["BFCL summary", "score (95% CI)", "prompts"])
    headers, kinds = error_kinds(db, run_id)
    return text + ("\n\n" + terminal_table(kinds, headers) if kinds else "")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = cli.parse_args(parser, argv)
    check_args(args)
    if args.resume is not None:
        given = cli.given_flags(parser, argv)
        others = sorted(given - RESUME_FLAGS)
        if others:
            raise UserError(
                f"--resume continues run {args.resume} as it was recorded: {', '.join(others)}"
                " cannot change (concurrency, timeout and port can)"
            )
        return resume(args, given)
    if args.epochs > 1 and args.temperature == 0:
        print(
            "note: at temperature 0 every epoch samples the same answer; "
            "repeats measure variance only with --temperature above 0",
            file=sys.stderr,
        )
    from labbench.eval.adapterbase import model_for_adapter
    from labbench.eval.evaluation import EvalPlan, record_eval
    from labbench.eval.suite import load_suite
    from labbench.serving.chatclient import normalize_url
    from labbench.serving.server import DEFAULT_HOST, port_is_free

    suite = load_suite(args.suite)  # bad suites fail here, before any server starts
    if args.limit is not None and args.limit >= len(suite.prompts):
        args.limit = None  # the whole suite: the same run as without a limit, compared as one
    urls = [normalize_url(url) for url in args.url.split(",")] if args.url is not None else []
    if len(set(urls)) < len(urls):
        twice = next(url for url in urls if urls.count(url) > 1)
        raise UserError(f"--url lists {twice} twice: each server once, please")
    suite_prompts = len(suite.prompts)
    if args.port is not None and not port_is_free(DEFAULT_HOST, args.port):
        # Refused before the ledger is opened: nothing ran, so nothing is recorded.
        raise UserError(f"--port {args.port} on {DEFAULT_HOST} is already in use")
    model, base = served_name(args.served_model), None
    if args.url is None:  # an adapter runs on its base model: refused now, if not
        model, base = model_for_adapter(
            args.model, args.adapter, args.allow_other_base, args.ledger
        )
    suite = replace(
        suite,
        prompts=suite.prompts[: args.limit],
        exec_tests=suite.exec_tests if args.exec is None else args.exec,
    )
    plan = EvalPlan(
        suite=suite,
        model=model,
        adapter=base.adapter if base else None,
        url=",".join(urls) or None,
        replicas=args.replicas,
        port=args.port,
        sampling=SamplingSettings(
            temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed
        ),
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        epochs=args.epochs,
        goal=args.goal,
        note=args.note,
        limit=args.limit,
        suite_prompts=suite_prompts,
        allow_other_base=args.allow_other_base,
        base_check=base,
    )
    with recording.recording_ledger(args.ledger) as ledger:
        started: list[int] = []
        outcome = say_if_interrupted(
            ledger.db, started, plan.planned(), lambda: record_eval(ledger.db, plan, started.append)
        )
    return report(outcome, plan, ledger)


def resume(args: argparse.Namespace, given: set[str]) -> int:
    from labbench.eval.evalresume import resume_eval

    with recording.recording_ledger(args.ledger) as ledger:
        plan, outcome = say_if_interrupted(
            ledger.db,
            [args.resume],
            None,
            lambda: resume_eval(
                ledger.db,
                args.resume,
                concurrency=args.concurrency if "--concurrency" in given else None,
                timeout_s=args.timeout if "--timeout" in given else None,
                port=args.port,
            ),
        )
    return report(outcome, plan, ledger)


def say_if_interrupted(db, started: list[int], planned: int | None, evaluate):
    """`evaluate()`, and on Ctrl-C (the run is recorded as interrupted, once `started` holds
    its id) how many results it kept and how to finish it, before the interruption goes on."""
    try:
        return evaluate()
    except KeyboardInterrupt:
        if started:
            run_id = started[0]
            kept = db.table("eval_results").count_where("run_id = ?", [run_id])
            if planned is None:  # a resume: as the run planned it
                config = json.loads(db.table("runs").get(run_id)["config"])
                planned = config["prompts_planned"] * config.get("epochs", 1)
            print(stopped_line(run_id, "interrupted", kept, planned), file=sys.stderr)
        raise


def report(outcome, plan, ledger) -> int:
    """The scores (and the settings they were made with), or why the run failed."""
    from labbench.core.formatting import eval_settings_text, scores_table

    if outcome.scores and not outcome.error:
        print(f"{plan.suite.name}: {eval_settings_text(plan.config())}")
        print(scores_table(outcome.scores))
        if outcome.scores.get("bfcl") is not None:
            print(bfcl_tables(ledger.db, outcome.run_id, outcome.scores["bfcl"]))
    print(f"recorded as run {outcome.run_id} in {ledger.path}", file=sys.stderr)
    if outcome.error:
        raise UserError(
            stopped_line(outcome.run_id, f"failed: {outcome.error}", outcome.kept, plan.planned())
        )
    return 0


def served_name(served_model: str | None) -> str | None:
    """The model to ask a url= server for; mlx_lm.server's name for the model it serves is the
    same as naming none, so both runs are filed under the server's URL, as one base model."""
    from labbench.serving.server import SERVED_MODEL

    return None if served_model == SERVED_MODEL else served_model


def stopped_line(run_id: int, what: str, kept: int, planned: int) -> str:
    """What a run that did not finish left (failed or interrupted) and how to finish it: one
    line, the last but the ledger's."""
    return (
        f"run {run_id} {what}; kept {kept} of {planned} results;"
        f" `just eval resume={run_id}` asks the rest"
    )


if __name__ == "__main__":
    cli.run(main)
