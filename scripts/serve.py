"""Serve a model with mlx_lm.server in the foreground until Ctrl-C.

just serve                                   # the built-in tiny model, on a free port
just serve model=mlx-community/Qwen2.5-Coder-1.5B-Instruct-4bit port=8080
just serve adapter=adapters/7                # on the model it was trained on
"""

import argparse
import sys
import time

from labbench.core import cli
from labbench.core.errors import UserError, describe_exit


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Serve a model until Ctrl-C.")
    parser.add_argument(
        "--model",
        help="model directory or Hugging Face id (default: the adapter's base model, else tiny)",
    )
    parser.add_argument("--adapter", help="LoRA adapter directory (served on its base model)")
    cli.add_allow_other_base(parser)
    parser.add_argument("--port", type=cli.port_number, help="port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    cli.add_ledger_args(parser)  # read only: the training run that names an adapter's base
    return parser


def main(argv: list[str] | None = None) -> int:
    args = cli.parse_args(build_parser(), argv)
    from labbench.eval.adapterbase import model_for_adapter
    from labbench.serving.server import start_server

    model, base = model_for_adapter(args.model, args.adapter, args.allow_other_base, args.ledger)
    adapter = base.adapter if base else None
    if base is not None and (warning := base.warning(str(args.adapter), "served")):
        print(warning, file=sys.stderr)
    try:
        with start_server(model, adapter, args.host, args.port, echo=True) as server:
            print(f"serving {model} at {server.base_url}  (Ctrl-C to stop)", flush=True)
            while server.alive():
                time.sleep(0.5)
            reason = server.error_line() or describe_exit(server.process.returncode)
            raise UserError(f"the server stopped: {reason}")
    except KeyboardInterrupt:
        print("\nstopped the server", file=sys.stderr)
    return 0


if __name__ == "__main__":
    cli.run(main)
