"""Write a deterministic chat-format dataset (train/valid/test.jsonl) that mlx-lm reads.

    just dummy-data
    just dummy-data out=data/mine n=600 seed=1
    just dummy-data suite=suites/extra.toml suite=baseline
    just dummy-data kind=dpo out=data/dpo      # prompt/chosen/rejected: right call vs a near miss
    just dummy-data kind=grpo out=data/grpo    # prompts with the expectations the scorer checks

Tool-call examples across the suites' own tools, about 30 % answered directly (all-tool data
teaches a model to call tools for everything), and a leakage check: no example may equal or
nearly equal a suite prompt. The tool calls are rendered through the chat template and parsed
back before anything is written.
"""

import argparse

from labbench.core import cli
from labbench.core.errors import UserError

DEFAULT_OUT = "data/dummy"  # a directory; train/valid/test.jsonl go inside
DEFAULT_N = 600  # examples in all three splits (80/10/10)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write a leakage-checked dummy chat dataset.")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="number of examples")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files")
    parser.add_argument(
        "--suite",
        action="append",
        help="suite whose tools to use and prompts to avoid (repeatable; default: baseline)",
    )
    parser.add_argument(
        "--kind",
        default="chat",
        choices=("chat", "dpo", "grpo"),
        help="chat examples (SFT), DPO/ORPO pairs, or GRPO prompts with expectations",
    )
    parser.add_argument("--force", action="store_true", help="replace a dataset already in --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    from labbench.data.dummydata import write_dummy_data
    from labbench.eval.suite import resolve_suite_path

    if args.n < 10:
        raise UserError("--n must be at least 10 (the valid and test splits need examples)")
    suites = [resolve_suite_path(name) for name in args.suite] if args.suite else None
    out = cli.user_path(args.out)
    existing = [name for name in ("train", "valid", "test") if (out / f"{name}.jsonl").exists()]
    if existing and not args.force:
        files = ", ".join(f"{name}.jsonl" for name in existing)
        raise UserError(f"{out} already holds a dataset ({files}): pass --force to replace it")
    report = write_dummy_data(out, args.n, args.seed, suites, kind=args.kind)
    counts = ", ".join(f"{count} {split}" for split, count in report.counts.items())
    tools = ", ".join(f"{name} {share:.0%}" for name, share in report.tool_share.items())
    print(f"wrote {report.total} {args.kind} examples to {report.out_dir}: {counts}")
    print(f"direct answers: {report.direct_share:.0%}; tool calls: {tools}")
    print(
        f"leakage check: passed (0 of {report.checked} examples near any of "
        f"{report.suite_prompts} suite prompts)"
    )
    print(f"fingerprint: {report.fingerprint[:16]}")
    return 0


if __name__ == "__main__":
    cli.run(main)
