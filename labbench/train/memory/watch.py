"""While a training runs: the watchdog that stops it above its memory ceiling, mlx's
measured peak recorded beside the plan's, and gradient checkpointing put back afterwards.
"""

import sys
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from labbench.core.errors import UserError
from labbench.record.ledger import Run
from labbench.train.memory.check import MemoryPlan, gb
from labbench.train.memory.plan import GB


def record_peaks(run: Run, plan: MemoryPlan | None, measured_here: float | None) -> None:
    """The run's predicted peak (one process's) beside mlx's measured one: the largest of its
    reports and of `measured_here` (this process's mx.get_peak_memory(), which also counts a
    step the watchdog stopped before it was reported), both in GB."""
    reported = next(
        iter(
            run.db.query(
                "SELECT MAX(peak_memory_gb) AS peak FROM train_reports WHERE run_id = ?", [run.id]
            )
        )
    )["peak"]
    peaks = [peak for peak in (reported, measured_here) if peak is not None]
    run.update(
        predicted_peak_gb=plan.prediction.peak / GB if plan else None,
        measured_peak_gb=max(peaks) if peaks else None,
    )


def mlx_peak_gb() -> float | None:
    """This process's mx.get_peak_memory() in GB, if mlx was imported (nothing ran otherwise)."""
    mx = sys.modules.get("mlx.core")
    return mx.get_peak_memory() / GB if mx else None


class MemoryCeiling(UserError):
    """The training's mlx memory passed the ceiling: the run stops, its checkpoints stay."""


@dataclass(frozen=True)
class MemoryWatch:
    """Reads mlx's memory before every batch mlx-lm draws (training and validation) and stops
    the training once it passed `ceiling` bytes. mlx's peak is read, not only what is active
    between steps, so a step's own high-water mark counts."""

    ceiling: float

    def check(self) -> None:
        import mlx.core as mx

        used = max(mx.get_active_memory(), mx.get_peak_memory())
        if used > self.ceiling:
            raise MemoryCeiling(f"memory ceiling ({gb(used)} of {gb(self.ceiling)})")

    def watching(self, iterate_batches):
        """mlx-lm's iterate_batches, checking the ceiling before each batch."""

        def watched(*args, **kwargs):
            for batch in iterate_batches(*args, **kwargs):
                self.check()
                yield batch

        return watched


def watched(watch: MemoryWatch | None, iterate_batches):
    return watch.watching(iterate_batches) if watch else iterate_batches


@contextmanager
def watched_in(module: Any, name: str, watch: MemoryWatch | None) -> Generator[None, None, None]:
    """For a trainer that calls its own module's batch iterator by name (mlx-lm-lora's DPO and
    ORPO take none as an argument): that iterator, watched, while the training runs."""
    original = getattr(module, name)
    setattr(module, name, watched(watch, original))
    try:
        yield
    finally:
        setattr(module, name, original)


@contextmanager
def grad_checkpoint_undone(model: Any) -> Generator[None, None, None]:
    """mlx-lm's grad_checkpoint replaces the block class's __call__, for every later model of
    that class in the process too (a sweep's next trial): put it back after training."""
    block_class = type(model.layers[0])
    call = block_class.__call__
    try:
        yield
    finally:
        block_class.__call__ = call
