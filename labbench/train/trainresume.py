"""`just train resume=RUN` (and a sweep's rerun): continue an interrupted or failed training in
its own run row from its last checkpoint, with the optimizer state, step count and data position
saved beside it (trainstate.py). The loss reports of iterations after that checkpoint came from
training that is thrown away: they are deleted, and the resumed ones take their place.
"""

import json
import sys
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings
from labbench.record.fingerprint import dataset_fingerprint
from labbench.record.resumes import resuming_run, stopped_run
from labbench.train.distributed import Launch
from labbench.train.training import TrainOutcome, TrainPlan, train_into
from labbench.train.trainstate import Checkpoint, latest_checkpoint


def launch_of_config(config: dict[str, Any]) -> Launch | None:
    recorded = config.get("distributed")
    if not recorded:
        return None
    hostfile = recorded.get("hostfile")
    return Launch(
        world_size=recorded["world_size"],
        backend=recorded["backend"],
        hostfile=Path(hostfile) if hostfile else None,
        hosts=tuple(recorded["hosts"]),
        port=recorded.get("port"),
    )


def plan_of_run(row: dict[str, Any]) -> TrainPlan:
    """The plan a recorded training ran with, from its runs row."""
    config = json.loads(row["config"])
    return TrainPlan(
        model=row["model"],
        data=Path(config["data"]),
        data_fingerprint=config["dataset_fingerprint"],
        settings=LoraSettings.from_dict(config),
        adapters_root=Path(row["adapter"]).parent,
        eval_suite=config.get("eval_suite"),
        eval_max_tokens=config.get("eval_max_tokens"),
        parent_run_id=row["parent_run_id"],
        launch=launch_of_config(config),
    )


def resume_point(row: dict[str, Any], plan: TrainPlan) -> Checkpoint:
    """The checkpoint run `row` continues from, once its dataset is checked to be the one it
    trained on; UserError saying why it cannot be resumed."""
    run_id = row["id"]
    if plan.settings.method != "sft":
        raise UserError(
            f"run {run_id} trained with method={plan.settings.method}: mlx-lm-lora saves no"
            " optimizer state with its checkpoints, so only SFT trainings resume; train it again"
        )
    if not plan.data.exists():
        raise UserError(f"run {run_id}'s dataset {plan.data} is gone")
    if dataset_fingerprint(plan.data) != plan.data_fingerprint:
        raise UserError(
            f"run {run_id} cannot be resumed: its dataset {plan.data} changed since it trained"
        )
    adapter_dir = Path(row["adapter"])
    found = latest_checkpoint(adapter_dir, plan.settings.iters) if adapter_dir.is_dir() else None
    if found is None:
        raise UserError(
            f"run {run_id} saved no checkpoint with its optimizer state in {adapter_dir}"
            f" (one every save_every={plan.settings.save_every} iterations): nothing to resume"
            " from; train it again"
        )
    return found


def spares_training(row: dict[str, Any], plan: TrainPlan) -> bool:
    """Whether train run `row` saves training `plan` again: it finished, or it stopped at a
    checkpoint it can resume from."""
    if row["status"] == "ok":
        return True
    try:
        resume_point(row, plan)
    except UserError:
        return False
    return True


def resume_training(
    db: Database, run_id: int, plan: TrainPlan | None = None, on_start=None
) -> TrainOutcome:
    """Continue train run `run_id` from its last checkpoint (with `plan`, a sweep's, else the
    recorded one). Raises UserError before anything runs when it cannot be resumed, then as
    record_training does."""
    row = stopped_run(db, run_id, "train")
    plan = plan or plan_of_run(row)
    checkpoint = resume_point(row, plan)
    adapter_dir = Path(row["adapter"])
    with resuming_run(db, run_id, kept=checkpoint.iteration) as run:
        db.execute(
            "DELETE FROM train_reports WHERE run_id = ? AND iteration > ?",
            [run_id, checkpoint.iteration],
        )
        run.update(summary=None)
        if on_start:
            on_start(run_id, adapter_dir)
        left = plan.settings.iters - checkpoint.iteration
        print(
            f"run {run_id}: resuming at iteration {checkpoint.iteration} of"
            f" {plan.settings.iters} ({left} left) from {checkpoint.weights.parent}",
            file=sys.stderr,
        )
        summary = train_into(db, run, plan, adapter_dir, checkpoint)
    return TrainOutcome(run_id, adapter_dir, summary)
