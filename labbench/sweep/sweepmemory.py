"""A sweep's memory plan: every configuration of the grid planned before any trial loads
anything, one line each, and the sweep refused when one would not fit (plan=force runs it
anyway, plan=only stops after the plans). Seeds do not change memory: one plan per
configuration, handed to each of its trials (recorded with the trial's training run).
"""

import sys
from dataclasses import dataclass, field
from typing import Any

from labbench.core.errors import UserError
from labbench.sweep.sweepfile import Sweep, label_of, lora_settings
from labbench.train.memory.check import MemoryOptions, planned


@dataclass(frozen=True)
class SweepMemory:
    plans: dict[str, Any] = field(default_factory=dict)  # configuration label -> MemoryPlan
    ceiling: float | None = None  # bytes: the watchdog's ceiling for every trial


def plan_sweep_memory(sweep: Sweep, model: str, options: MemoryOptions) -> SweepMemory:
    plans = {}
    for configuration in sweep.configurations():
        data = configuration["data"] if "data" in configuration else sweep.data
        settings = lora_settings(sweep, configuration, sweep.seeds[0])
        plan = planned(model, settings, data, options)
        if plan is None:  # plan=force without a config.json: no plans; the watchdog stays
            return SweepMemory({}, options.watch_ceiling())
        label = label_of(configuration)
        plans[label] = plan
        print(f"memory plan: {label}: {plan.summary()}", file=sys.stderr)
    too_big = [label for label, plan in plans.items() if not plan.fits]
    if too_big and options.plan == "check":
        label = too_big[0]
        more = f" (and {len(too_big) - 1} more configurations)" if len(too_big) > 1 else ""
        raise UserError(f"sweep configuration {label}{more}: {plans[label].refusal()}")
    return SweepMemory(plans, options.watch_ceiling())
