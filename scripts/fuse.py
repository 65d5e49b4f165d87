"""Fuse a trained LoRA adapter into its base model, maybe quantize it, check it, and verify
that it scores like the adapter did.

    just fuse adapter=adapters/3                       # fused, full precision
    just fuse adapter=adapters/3 bits=8                # then quantized to 8 bits
    just fuse adapter=adapters/3 checkpoint=200 verify=baseline

The model goes to models/fused-<run-id>[-q<bits>] beside the ledger, written into a temporary
directory and renamed once it passed its checks: the same eos/bos token ids, chat template and
tokenizer files as its base, and a one-token generation. A quantized base is dequantized
first. Then the fused model is evaluated on the suite the adapter was evaluated on (verify=),
with the same sampling settings, and compared with the adapter's eval prompt by prompt:
`fused matches adapter` or `fused is worse (p = ...)`. `just serve model=models/fused-N` and
`just eval model=models/fused-N` take it like any model.
"""

import argparse
import sys
from pathlib import Path

from labbench.core import cli
from labbench.core.errors import UserError
from labbench.present import recording
from labbench.train.fusemodel import BITS_CHOICES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fuse a LoRA adapter into its base model, quantize, check and verify it.",
        epilog="Make-style key=value words work too: adapter=adapters/3 bits=8.",
    )
    parser.add_argument("--adapter", required=True, help="adapter directory, e.g. adapters/3")
    parser.add_argument(
        "--checkpoint", type=int, help="fuse this saved checkpoint (training iteration)"
    )
    parser.add_argument(
        "--bits",
        type=int,
        help=f"quantize the fused model: {', '.join(map(str, BITS_CHOICES))}",
    )
    parser.add_argument("--group-size", type=int, help="quantization group size (mlx-lm: 64)")
    parser.add_argument(
        "--dequantize",
        type=cli.boolean,
        metavar="true|false",
        help="dequantize a quantized base before fusing (default: true when it is quantized)",
    )
    parser.add_argument(
        "--verify",
        help="suite to verify on (default: the one the adapter was evaluated on; none: skip)",
    )
    cli.add_run_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    if args.group_size is not None and args.group_size not in (32, 64, 128):
        raise UserError(f"--group-size {args.group_size}: choose 32, 64 or 128")
    from labbench.serving.server import check_adapter
    from labbench.train.fuserun import NO_VERIFY, FusePlan, record_fuse

    adapter = Path(str(check_adapter(args.adapter)))
    if args.verify not in (None, NO_VERIFY):
        from labbench.eval.suite import load_suite

        load_suite(args.verify)  # a bad suite fails before the ledger is opened
    with recording.recording_ledger(args.ledger) as ledger:
        plan = FusePlan(
            adapter_dir=adapter,
            checkpoint=args.checkpoint,
            bits=args.bits,
            group_size=args.group_size,
            dequantize=args.dequantize,
            verify=args.verify,
            models_root=ledger.models_dir,
            goal=args.goal,
            note=args.note,
        )
        outcome = record_fuse(ledger.db, plan)
    print(f"recorded as run {outcome.run_id} in {ledger.path}", file=sys.stderr)
    print(f"fused model: {outcome.output}")
    print(f"verdict: {outcome.verdict}")
    return 0


if __name__ == "__main__":
    cli.run(main)
