"""Train every configuration of a grid once per seed, evaluate each adapter and the base model,
and say whether the best configuration beats the base model beyond seed noise.

    just sweep sweeps/example.toml
    just sweep sweeps/example.toml --pending      # list the trials left to train, run nothing
    just sweep sweeps/example.toml ledger=experiments/ledger.db

Trials are ordinary train and eval runs linked to one `sweep` run. Running the same file again
trains only what is not finished (a trial is matched on model, suite, eval settings, dataset,
training settings and seed); Ctrl-C leaves a sweep that the next run resumes.
"""

import argparse
import sys

from labbench import cli
from labbench.blas import reexec_with_openblas


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run a sweep file: a grid of training settings x seeds, with a verdict.",
        epilog="Make-style key=value words work too: ledger=PATH.",
    )
    parser.add_argument("file", help="the sweep file (TOML), e.g. sweeps/example.toml")
    parser.add_argument(
        "--pending", action="store_true", help="list the trials left to train and stop"
    )
    cli.add_run_args(parser)
    return parser


def report(db, sweep_run_id: int) -> None:
    """The sweep table, the best configuration and the verdict, in the terminal."""
    from labbench.formatting import terminal_table
    from labbench.sweepreport import base_line, load_result, table, verdict

    result = load_result(db, sweep_run_id)
    print(terminal_table(*table(result)))
    print(base_line(result))
    if result.best is not None and len(result.configurations) > 1:
        print(f"best: {result.best.label}")
    print(f"verdict: {verdict(result)}")


def run_file_sweep(sweep, args: argparse.Namespace) -> int:
    """Run (or with --pending, list) a loaded Sweep; shared with `just train seeds=...`."""
    from labbench.server import resolve_model
    from labbench.suite import load_suite
    from labbench.sweep import (
        base_eval_plan,
        base_fingerprint,
        pending_trials,
        plan_trials,
        run_sweep,
    )

    suite = load_suite(sweep.suite)  # a bad suite fails now, before any training
    model = resolve_model(sweep.model)
    with cli.recording_ledger(args.ledger) as ledger:
        if args.pending:
            base = base_fingerprint(base_eval_plan(sweep, suite, model), ledger.db)
            trials = plan_trials(sweep, base)
            pending = pending_trials(ledger.db, trials)
            print(f"{len(pending)} of {len(trials)} trials left to train")
            for trial in pending:
                print(f"{trial.fingerprint}  {trial.label}, seed {trial.seed}")
            return 0
        sweep_run_id = run_sweep(
            ledger.db, sweep, suite, model, ledger.adapters_dir, goal=args.goal, note=args.note
        )
        report(ledger.db, sweep_run_id)
    print(f"recorded as sweep run {sweep_run_id} in {ledger.path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    from labbench.sweepfile import load_sweep

    return run_file_sweep(load_sweep(cli.user_path(args.file)), args)


if __name__ == "__main__":
    reexec_with_openblas()
    cli.run(main)
