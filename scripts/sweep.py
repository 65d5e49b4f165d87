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

from labbench.core import cli
from labbench.machine.blas import reexec_with_openblas
from labbench.train.memory.check import MemoryOptions, add_memory_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run a sweep file: a grid of training settings x seeds, with a verdict.",
        epilog="Make-style key=value words work too: ledger=PATH.",
    )
    parser.add_argument("file", help="the sweep file (TOML), e.g. sweeps/example.toml")
    parser.add_argument(
        "--pending", action="store_true", help="list the trials left to train and stop"
    )
    add_memory_args(parser)
    cli.add_run_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    from labbench.sweep.sweep import sweep_command
    from labbench.sweep.sweepfile import checked_inputs, load_sweep

    sweep = load_sweep(cli.user_path(args.file))
    suite, model = checked_inputs(sweep)  # before the ledger is opened or anything runs
    return sweep_command(
        sweep,
        suite,
        model,
        args.ledger,
        args.goal,
        args.note,
        pending=args.pending,
        memory_options=MemoryOptions.from_args(args),
    )


if __name__ == "__main__":
    reexec_with_openblas()
    cli.run(main)
