"""Evaluate a model on a suite through a real mlx_lm.server, and record every result.

just eval                                   # the built-in tiny model, baseline suite
just eval model=mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit adapter=adapters/7
just eval url=http://127.0.0.1:8080 served_model=qwen2.5-coder suite=suites/mine.toml
"""

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labbench import cli
from labbench.cli import UserError

DEFAULT_SUITE = "baseline"  # a name in suites/ or a path to a .toml file
DEFAULT_PORT = None  # None: a free port is picked


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate a model on a suite and record the run in the ledger.",
        epilog="Make-style key=value words work too: model=PATH suite=NAME.",
    )
    parser.add_argument("--model", help="model directory or Hugging Face id (default: tiny)")
    parser.add_argument("--adapter", help="LoRA adapter directory, e.g. adapters/7")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help="suite name or TOML path")
    parser.add_argument("--url", help="evaluate a running OpenAI-compatible server instead")
    parser.add_argument("--served-model", help="model name to send to a --url server")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port for our server")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature")
    parser.add_argument("--max-tokens", type=int, help="override the suite's max_tokens")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    cli.add_run_args(parser)
    return parser


def check_args(args: argparse.Namespace) -> None:
    if args.url and (args.model or args.adapter or args.port):
        raise UserError("--url evaluates a running server: --model, --adapter, --port don't apply")
    if args.served_model and not args.url:
        raise UserError("--served-model goes with --url")
    if args.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UserError("--max-tokens must be at least 1")


def main() -> int:
    args = cli.parse_args(build_parser())
    cli.raise_keyboard_interrupt_on_sigterm()
    from labbench.evaluation import (
        Endpoint,
        SamplingSettings,
        ServerGone,
        format_summary,
        run_suite,
    )
    from labbench.fingerprint import eval_fingerprint
    from labbench.journal import write_journal
    from labbench.ledger import dataset_of_adapter, journal_dir, open_ledger, recording_run
    from labbench.server import SERVED_MODEL, check_adapter, resolve_model, running_server
    from labbench.suite import load_suite

    try:
        check_args(args)
        suite = load_suite(args.suite)  # bad suites fail here, before any server starts
        adapter = check_adapter(args.adapter)
        model = args.served_model if args.url else resolve_model(args.model)
    except UserError as error:
        cli.fail(str(error))
    sampling = SamplingSettings(temperature=args.temperature, max_tokens=args.max_tokens)
    config = {
        "suite_path": str(suite.path),
        "url": args.url,
        "served_model": args.served_model,
        "concurrency": args.concurrency,
        "request_timeout_s": args.timeout,
        "sampling": sampling.as_dict(),
    }
    ledger = cli.ledger_path(args.ledger)
    db = open_ledger(ledger)
    exit_code = 1
    run_id = None
    try:
        with recording_run(
            db,
            "eval",
            config,
            model=model or args.url,
            adapter=adapter,
            suite=suite.name,
            goal=args.goal,
            note=args.note,
        ) as run:
            run_id = run.id
            print(f"run {run.id}: evaluating {model or args.url} on {suite.name}", file=sys.stderr)
            parts = eval_fingerprint(model, adapter, suite.path, sampling.as_dict(), db)
            run.update(
                fingerprint=parts.pop("fingerprint"),
                fingerprint_parts=parts,
                dataset=dataset_of_adapter(db, adapter),
            )
            server_cm = (
                nullcontext() if args.url else running_server(model, adapter, port=args.port)
            )
            with server_cm as server:
                if server is None:
                    endpoint = Endpoint(args.url, args.served_model, timeout_s=args.timeout)
                    endpoint.describe_death = lambda: f"cannot reach {args.url}"
                else:
                    run.update(config={**config, "url": server.base_url, "server_pid": server.pid})
                    endpoint = Endpoint(
                        server.base_url, SERVED_MODEL, alive=server.alive, timeout_s=args.timeout
                    )
                    endpoint.describe_death = lambda: _server_death(server)
                try:
                    summary = run_suite(run, suite, endpoint, sampling, args.concurrency)
                except (ServerGone, KeyboardInterrupt):
                    if server is not None:
                        run.update(output_excerpt=server.log_excerpt())
                    raise
        print(format_summary(summary))
        exit_code = 0
    except ServerGone as error:
        kept = db["eval_results"].count_where("run_id = ?", [run_id])
        print(
            f"error: run {run_id} failed: {error}; kept {kept} of {len(suite.prompts)} results",
            file=sys.stderr,
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"run {run_id} interrupted; results so far are in {ledger}", file=sys.stderr)
        exit_code = 130
    finally:
        write_journal(db, journal_dir(ledger))
    return exit_code


def _server_death(server) -> str:
    if server.alive():
        return "the server stopped answering"
    detail = server.error_line() or f"exit code {server.process.returncode}"
    return f"the server exited ({detail})"


if __name__ == "__main__":
    sys.exit(main())
