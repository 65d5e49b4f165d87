"""One rank of a data-parallel training, started by `mlx.launch` for `just train np=N`.

Not for direct use: `scripts/train.py` passes the spec (JSON) and watches the ranks. Each rank
prints its outcome as a status line last, whatever happens, because mlx.launch exits 0 when a
rank crashes. Only rank 0 writes to the ledger.
"""

import json
import os
import re
import sys
import traceback
from pathlib import Path

from labbench.core import cli
from labbench.core.atomicfile import write_text_atomically
from labbench.core.errors import UserError
from labbench.machine.blas import reexec_with_openblas
from labbench.train.distributed import STATUS_MARKER, TRACE_MARKER


class _Silent:
    """The report writer of ranks other than 0: mlx-lm calls the callbacks on every rank."""

    def start(self, iteration: int = 0) -> None:
        pass

    def on_train_loss_report(self, info: dict) -> None:
        pass

    def on_val_loss_report(self, info: dict) -> None:
        pass


def scratch_ledger():
    from sqlite_utils import Database

    from labbench.record.migrations import migrations

    db = Database(memory=True)
    migrations.apply(db)
    return db


def ledger_of_run(spec: dict):
    """The launching machine's ledger, with the run in it: rank 0 must run beside it."""
    from labbench.core.errors import UserError
    from labbench.record.ledger import open_ledger

    ledger = Path(spec["ledger"])
    if ledger.is_file():  # open_ledger would make a new one
        db = open_ledger(ledger)
        if db["runs"].count_where("id = ?", [spec["run_id"]]):
            return db
    raise UserError(
        f"rank 0 finds no run {spec['run_id']} in {ledger}: it must run on the machine that "
        "holds the ledger (list that machine first in the hostfile)"
    )


def train_rank(spec: dict, rank: int, world_size: int) -> dict:
    from labbench.core.settings import LoraSettings
    from labbench.train.lora import prepare_training, train_lora, write_adapter_config
    from labbench.train.trainreports import ReportWriter
    from labbench.train.trainstate import ADAPTER_WEIGHTS, Checkpoint

    if world_size != spec["world_size"]:
        raise UserError(
            f"came up at world size {world_size}, not {spec['world_size']}: "
            "it would have trained alone (is the backend reachable?)"
        )
    settings = LoraSettings.from_dict(spec["settings"])
    adapter_dir = Path(spec["adapter_dir"])
    prepared = prepare_training(spec["model"], Path(spec["data"]), settings)
    if rank == 0:  # mlx-lm's lora.py writes it on every rank; one writer is enough
        write_adapter_config(adapter_dir, prepared.adapter_config, spec["model"])
        # Without a ledger (the bench) the reports only go back in the status file.
        db = ledger_of_run(spec) if spec["ledger"] else scratch_ledger()
        writer = ReportWriter(
            db, spec["run_id"], settings.steps_per_report, echo=bool(spec["ledger"])
        )
    else:
        writer = _Silent()
    weights = adapter_dir / ADAPTER_WEIGHTS
    resume = spec.get("resume_from")
    train_lora(
        prepared.loaded,
        prepared.train_set,
        prepared.valid_set,
        settings,
        weights,
        writer,  # ty: ignore[invalid-argument-type]
        resume_from=Checkpoint(
            int(resume["iteration"]), Path(resume["weights"]), Path(resume["optimizer"])
        )
        if resume
        else None,
        rank=rank,
    )
    reports = writer.reports if isinstance(writer, ReportWriter) else []
    return {"load_seconds": prepared.loaded.load_seconds, "reports": reports}


def main(argv: list[str] | None = None) -> int:
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    # The launcher's rank names the status; a rank started without it is named by its pid.
    name = os.environ.get("MLX_RANK", f"pid{os.getpid()}")
    status: dict = {"rank": name, "pid": os.getpid(), "ok": False}
    if spec.get("pid_dir"):  # local ranks: the parent notices one that dies without a status
        # Whole or not at all: the parent polls these files and would read a half-written one.
        write_text_atomically(Path(spec["pid_dir"]) / f"rank-{name}.pid", str(os.getpid()))
    try:
        try:
            import mlx.core as mx

            group = mx.distributed.init()  # binds the ring's port: fails here when it is taken
            status["world_size"] = group.size()
            status |= train_rank(spec, group.rank(), group.size())
            status["ok"] = True
        except Exception as error:
            status["error"] = error_line(error)
            if not isinstance(error, UserError):
                # In the launch log, marked: the parent shows the error line, not this.
                for line in traceback.format_exc().splitlines():
                    print(f"{TRACE_MARKER}{line}", flush=True)
    except KeyboardInterrupt:
        # Ctrl-C, or SIGTERM from the launcher or from us after another rank failed; also
        # when it arrives while an error it caused (a wait the signal cut short) is reported.
        status |= {"stopped": True, "error": "stopped"}
    finally:
        # Its own line, whatever another rank's output left unfinished.
        print(f"\n{STATUS_MARKER}{json.dumps(status)}", flush=True)
    return 0 if status["ok"] else 130 if status.get("stopped") else 1


def error_line(error: Exception) -> str:
    """A failed rank's error in one line, with what an OS error number means (mlx's ring says
    "Couldn't bind socket (error: 98)")."""
    lines = str(error).strip().splitlines()
    message = re.sub(
        r"\(error: (\d+)\)",
        lambda m: f"(error {m[1]}: {os.strerror(int(m[1]))})",
        lines[0] if lines else "",
    )
    if isinstance(error, UserError):
        return message
    return f"{type(error).__name__}: {message}".rstrip(": ")


if __name__ == "__main__":
    reexec_with_openblas()
    cli.run(main)
