"""The memory plan against this machine, before a training loads anything, and the ceiling
the watchdog (labbench/train/memory/watch.py) holds the training to while it runs.

`check_training_memory()` is what `just train`, `just bench` and preference training call (a
sweep plans each configuration through `planned()`): it prints the plan and refuses, in one
line, a run predicted not to fit (plan=force overrides; plan=only stops after the plan).
"""

import argparse
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labbench.core.cli import boolean
from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.machine.hardware import MachineMemory, machine_memory
from labbench.train.memory.plan import (
    GB,
    ModelShape,
    Prediction,
    Workload,
    longest_example,
    model_shape,
    padded_length,
    predict,
    read_config,
)

# The share of the machine's memory a training may use. Linux: of the RAM available now (the
# rest is the process's own Python side). A Mac: of unified memory, which macOS and the GPU's
# other users share; Metal recommends keeping GPU work to about three quarters of it. memory=
# plans for a Mac, so its default is the Mac's share.
MAC_CEILING = 0.75
DEFAULT_CEILING = MAC_CEILING if sys.platform == "darwin" else 0.9
PLAN_CHOICES = ("check", "only", "force")

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(GB|G|MB|M|GIB|MIB)?\s*$", re.IGNORECASE)
_UNITS = {"": GB, "GB": GB, "G": GB, "MB": 1e6, "M": 1e6, "GIB": 2**30, "MIB": 2**20}


def size_bytes(text: str) -> float:
    """'32GB', '500MB', '16GiB' or a bare number of GB -> bytes (argparse type)."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 32GB or 500MB, got {text!r}")
    return float(match.group(1)) * _UNITS[(match.group(2) or "").upper()]


def ceiling_value(text: str) -> float:
    """--memory-ceiling: a fraction of the machine's memory (0 < x <= 1, kept as is) or a size
    with its unit (12GB, 500MB, returned in bytes)."""
    try:
        value = float(text)
    except ValueError:
        return size_bytes(text)
    if 0 < value <= 1:
        return value
    raise argparse.ArgumentTypeError(
        f"expected a fraction of memory (0 < x <= 1) or a size such as 12GB, got {text!r}"
    )


def add_memory_args(parser: argparse.ArgumentParser, grad_checkpoint: bool = False) -> None:
    """plan=check|only|force, memory_ceiling=, memory= (train, bench and sweep), and with
    `grad_checkpoint` the training setting of that name (a sweep takes it from its file)."""
    if grad_checkpoint:
        parser.add_argument(
            "--grad-checkpoint",
            type=boolean,
            nargs="?",
            const=True,
            default=LoraSettings.grad_checkpoint,
            help="recompute activations in the backward pass: less memory, slower",
        )
    parser.add_argument(
        "--plan",
        choices=PLAN_CHOICES,
        default="check",
        help="memory plan: check (refuse a run predicted not to fit), only (print it, load "
        "nothing), force (train even so)",
    )
    parser.add_argument(
        "--memory-ceiling",
        type=ceiling_value,
        help="stop training above this much mlx memory: a fraction of the machine's memory "
        f"or a size such as 12GB (default: {DEFAULT_CEILING}; with --memory: {MAC_CEILING})",
    )
    parser.add_argument(
        "--memory",
        type=size_bytes,
        help="plan against a Mac with this much unified memory (e.g. 32GB) instead of this machine",
    )


@dataclass(frozen=True)
class MemoryOptions:
    """What the user asked of the memory plan and the watchdog (add_memory_args' flags)."""

    plan: str = "check"  # check, only or force
    ceiling: float = DEFAULT_CEILING  # a fraction of memory (<= 1) or bytes
    memory: float | None = None  # plan against this many bytes instead of this machine's

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "MemoryOptions":
        ceiling = args.memory_ceiling
        if ceiling is None:
            ceiling = MAC_CEILING if args.memory else DEFAULT_CEILING
        return cls(args.plan, ceiling, args.memory)

    def watch_ceiling(self) -> float | None:
        """The watchdog's ceiling in bytes: always of this machine's memory (memory= plans for
        another machine; the run happens on this one)."""
        return resolve_ceiling(self.ceiling, machine_memory())


@dataclass(frozen=True)
class MemoryPlan:
    model: str
    shape: ModelShape
    work: Workload
    prediction: Prediction  # of one process
    memory: MachineMemory | None
    ceiling: float | None  # bytes; None when the machine's memory is unknown
    processes: int = 1  # ranks sharing this machine
    world_size: int = 1  # ranks the batch is split over (each takes batch_size / world_size)
    rows_per_example: int = 1  # 2 for preference pairs
    config: dict = field(default_factory=dict, repr=False)  # config.json, for suggestions
    settings: LoraSettings = field(default_factory=LoraSettings, repr=False)

    @property
    def total(self) -> float:
        """The predicted peak of all the processes on this machine."""
        return self.prediction.peak * self.processes

    @property
    def fits(self) -> bool:
        return self._fits(self.shape, self.work)

    def record(self) -> dict:
        """As kept in the run's config["memory_plan"] (its peak also in runs.predicted_peak_gb)."""
        p = self.prediction
        return {
            "batch_rows": self.work.batch_size,
            "length": self.work.length,
            "length_source": self.work.length_source,
            "grad_checkpoint": self.work.grad_checkpoint,
            "weights_gb": p.weights / GB,
            "adapters_gb": p.adapters / GB,
            "activations_gb": p.activations / GB,
            "peak_gb": p.peak / GB,
            "memory_gb": self.memory.bytes / GB if self.memory else None,
            "memory_kind": self.memory.kind if self.memory else None,
            "ceiling_gb": self.ceiling / GB if self.ceiling else None,
        }

    def lines(self) -> list[str]:
        shape, work, p = self.shape, self.work, self.prediction
        adapted = f"{shape.adapted_blocks} of {shape.blocks} blocks"
        quantized = "" if shape.quantization == "none" else f", {shape.quantization}"
        checkpointing = ", gradient checkpointing" if work.grad_checkpoint else ""
        lines = [
            f"memory plan for {self.model}{quantized}:",
            f"  weights      {gb(p.weights)}",
            f"  LoRA         {gb(p.adapters)}  ({shape.trainable_params:,} weights x4: "
            f"the weights, gradients, Adam's two moments; {adapted})",
            f"  activations  {gb(p.activations)}  (batch {work.batch_size} x {work.length} "
            f"tokens from {work.length_source}{checkpointing})",
            f"  peak         {gb(p.peak)} predicted"
            + (f" per rank, {gb(self.total)} for {self.processes}" if self.processes > 1 else ""),
        ]
        if self.memory is None or self.ceiling is None:
            lines.append("  this machine's memory is unknown: not checked")
        else:
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(
                f"  against      {gb(self.memory.bytes)} {self.memory.kind}, ceiling "
                f"{gb(self.ceiling)}: {verdict}"
            )
        return lines

    def summary(self) -> str:
        """The plan in one line: 'peak 0.23 GB predicted (batch 4 x 512 tokens), ceiling
        20.67 GB: fits'."""
        ceiling = f", ceiling {gb(self.ceiling)}" if self.ceiling else ""
        verdict = "fits" if self.fits else "does NOT fit"
        return (
            f"peak {gb(self.total)} predicted (batch {self.work.batch_size} x"
            f" {self.work.length} tokens){ceiling}: {verdict}"
        )

    def refusal(self) -> str:
        """The one line that refuses this plan, with what would fit."""
        of = f" of {gb(self.memory.bytes)} {self.memory.kind}" if self.memory else ""
        return (
            f"predicted peak {gb(self.total)} is above the ceiling"
            f" {gb(self.ceiling or 0)}{of}; {self.suggestion()}"
            " (plan=force trains anyway)"
        )

    def suggestion(self) -> str:
        """What would fit: a smaller batch, else batch 1 with a shorter max_seq_length, else
        gradient checkpointing, else fewer adapted layers (with batch 1)."""
        work, one = self.work, replace(self.work, batch_size=self.rows(self.world_size))
        for batch in range(self.settings.batch_size - 1, 0, -1):
            if batch % self.world_size == 0 and self._fits(
                self.shape, replace(work, batch_size=self.rows(batch))
            ):
                return f"batch_size={batch} would fit"
        smallest = f"batch_size={self.world_size}"
        for length in shorter(work.length):
            if self._fits(self.shape, replace(one, length=length)):
                return f"{smallest} max_seq_length={length} would fit"
        if not work.grad_checkpoint and self._fits(self.shape, replace(one, grad_checkpoint=True)):
            return f"{smallest} grad_checkpoint=true would fit"
        layers = self.shape.adapted_blocks // 2
        while layers >= 1:
            shape = model_shape(self.config, self.settings.rank, layers, self.settings.keys)
            for length in [work.length, *shorter(work.length)]:
                if self._fits(shape, replace(one, length=length)):
                    return f"num_layers={layers} {smallest} max_seq_length={length} would fit"
            layers //= 2
        return "nothing fits: even the weights alone need more (a smaller model, fewer bits)"

    def rows(self, batch_size: int) -> int:
        """The rows one process trains at a time for a batch_size."""
        return max(1, batch_size // self.world_size) * self.rows_per_example

    def _fits(self, shape: ModelShape, work: Workload) -> bool:
        peak = predict(shape, work).peak * self.processes
        return self.ceiling is None or peak <= self.ceiling


def shorter(length: int) -> list[int]:
    """Sequence lengths to suggest below `length`: halving, not below 64 tokens."""
    lengths = []
    while length >= 128:
        length //= 2
        lengths.append(length)
    return lengths


def gb(value: float) -> str:
    return f"{value / GB:.2f} GB" if value >= 0.1 * GB else f"{value / GB:.3f} GB"


def resolve_ceiling(setting: float, memory: MachineMemory | None) -> float | None:
    """--memory-ceiling as bytes: a fraction of `memory`, or the size given."""
    if setting > 1:
        return setting
    return setting * memory.bytes if memory else None


def plan_memory(
    model: str,
    settings: LoraSettings,
    data: Path | None,
    *,
    ceiling: float = DEFAULT_CEILING,
    memory: float | None = None,
    rows_per_example: int = 1,
    launch: Any = None,
) -> MemoryPlan:
    """The plan of training `settings` on `model` (a directory or hub id: only its config.json
    is read) with `data` (its longest example sets the length, when the tokenizer is here).
    `rows_per_example`: 2 for preference pairs (chosen and rejected go through together);
    `launch`: a distributed.Launch, whose ranks each train batch_size / world_size rows."""
    config = read_config(model)
    shape = model_shape(config, settings.rank, settings.num_layers, settings.keys)
    longest = longest_example(model, data, settings.mask_prompt) if data else None
    if longest is None:
        length, source = settings.max_seq_length, "max_seq_length"
    else:
        length = padded_length(longest, settings.max_seq_length)
        source = f"the data's longest example ({longest} tokens)"
    world_size = launch.world_size if launch else 1
    processes = local_ranks(launch)
    rows = max(1, settings.batch_size // world_size) * rows_per_example
    work = Workload(rows, length, settings.grad_checkpoint, source)
    here = MachineMemory(int(memory), "unified memory (memory=)") if memory else machine_memory()
    return MemoryPlan(
        model,
        shape,
        work,
        predict(shape, work),
        here,
        resolve_ceiling(ceiling, here),
        processes,
        world_size,
        rows_per_example,
        config,
        settings,
    )


def check_memory(plan: MemoryPlan, mode: str = "check") -> None:
    """Print the plan (stderr); refuse a run predicted not to fit unless mode is force."""
    for line in plan.lines():
        print(line, file=sys.stderr)
    if plan.fits:
        return
    if mode == "check":
        raise UserError(plan.refusal())
    if mode == "only":
        print(f"  {plan.suggestion()}", file=sys.stderr)
    else:
        print("  plan=force: training anyway", file=sys.stderr)


def planned(
    model: str, settings: LoraSettings, data: Path | None, options: MemoryOptions, **more: Any
) -> MemoryPlan | None:
    """plan_memory with the user's options; None (and a warning) when it cannot be made and
    plan=force says to train anyway."""
    try:
        return plan_memory(
            model, settings, data, ceiling=options.ceiling, memory=options.memory, **more
        )
    except UserError as error:
        if options.plan != "force":
            raise
        print(f"warning: no memory plan ({error}); plan=force: training anyway", file=sys.stderr)
        return None


def check_training_memory(
    model: str,
    settings: LoraSettings,
    data: Path | None,
    options: MemoryOptions,
    *,
    rows_per_example: int = 1,
    launch: Any = None,
) -> MemoryPlan | None:
    """The one call before a training loads anything (train, bench, sweep trials, preference
    training): plan, print, refuse what does not fit (unless options.plan is force). The
    caller stops after it when options.plan is "only". None: plan=force without a plan (the
    model's config.json could not be had)."""
    plan = planned(model, settings, data, options, rows_per_example=rows_per_example, launch=launch)
    if plan:
        check_memory(plan, options.plan)
    return plan


def local_ranks(launch: Any) -> int:
    """How many of a launch's ranks run on this machine: all of np=N; one per host of a
    hostfile (this machine's memory then stands for each host's)."""
    if launch is None:
        return 1
    local = set(launch.hosts) <= {"127.0.0.1", "localhost"}
    return launch.world_size if local else 1
