"""Build the project's tiny model offline: a random Qwen2 with its own BPE tokenizer (~1.5 s).

python scripts/tiny_model.py                    # models/tiny, unless it is already built
python scripts/tiny_model.py --force seed=1     # rebuild it with another weight seed
python scripts/tiny_model.py --chat             # models/tiny-chat: pre-trained (shipped; ~12 min)
python scripts/tiny_model.py --out /tmp/tiny    # somewhere else
python scripts/tiny_model.py --quantize 4       # models/tiny-q4: models/tiny at 4 bits (QLoRA)
"""

import argparse
import time
from pathlib import Path

from labbench.core import cli
from labbench.core.errors import UserError
from labbench.tiny.tinymodel import TINY_MODEL_DIR, build_tiny_model, is_tiny_model_ready

DEFAULT_SEED = 0  # seed of the random weight init; the tokenizer is the same for every seed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        help="model directory (default: models/tiny, or models/tiny-chat with --chat)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"weight init seed (default: {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--chat",
        action="store_true",
        help="the pre-trained chat model (models/tiny-chat, shipped; --force rebuilds it, ~12 min)",
    )
    parser.add_argument(
        "--quantize",
        type=int,
        choices=(2, 3, 4, 5, 6, 8),
        metavar="BITS",
        help="models/tiny quantized to BITS (models/tiny-qBITS), as `mlx_lm convert -q` does",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if it is already built")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    if args.out:
        args.out = cli.user_path(args.out)
    if args.chat and args.quantize:
        raise UserError("--chat and --quantize: choose one")
    if args.chat:
        from labbench.tiny.pretrain import CHAT_MODEL_DIR, pretrain_tiny_model

        out, build = args.out or CHAT_MODEL_DIR, pretrain_tiny_model
    elif args.quantize:
        from labbench.tiny.tinymodel import quantized_tiny_model_dir
        from labbench.train.fusemodel import build_quantized_tiny_model

        bits = args.quantize
        out = args.out or quantized_tiny_model_dir(bits)

        def build(out: Path, seed: int) -> Path:
            return build_quantized_tiny_model(out, bits)
    else:
        out, build = args.out or TINY_MODEL_DIR, build_tiny_model
    if is_tiny_model_ready(out) and not args.force:
        print(f"{out} is already built (--force rebuilds it)")
        return 0
    start = time.perf_counter()
    try:
        build(out, seed=args.seed)
    except KeyboardInterrupt:
        raise UserError(f"interrupted: {out} was left as it was") from None
    print(f"built {out} (seed {args.seed}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    cli.run(main)
