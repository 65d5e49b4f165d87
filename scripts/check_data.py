"""Validate a dataset before training on it: every problem as file:line: problem.

just check-data data/dummy
just check-data data/mine/train.jsonl
just check-data data/dpo        # prompt/chosen/rejected pairs (DPO, ORPO)
just check-data data/grpo       # GRPO prompts with expectations: file:line: id: field: problem
"""

import argparse
import sys

from labbench.core import cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Check a dataset by the rule `just train` applies: train.jsonl and "
        "valid.jsonl present and not empty, and no bad JSON, wrong roles, empty content or a "
        "last message that isn't the assistant's; preference pairs need prompt, chosen and "
        "rejected text, GRPO prompts the checks of a suite prompt."
    )
    parser.add_argument("path", help="a directory with train/valid/test.jsonl, or one .jsonl")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    from labbench.data.datacheck import check_dataset, count_examples

    path = cli.user_path(args.path)
    problems = check_dataset(path)
    for problem in problems:
        print(problem)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        print(f"error: {count} in {path}", file=sys.stderr)
        return 1
    counts = count_examples(path)
    print("ok: " + ", ".join(f"{count} {split}" for split, count in counts.items()) + " examples")
    return 0


if __name__ == "__main__":
    cli.run(main)
