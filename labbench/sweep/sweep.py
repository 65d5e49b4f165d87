"""Run a sweep: the base model evaluated once, first, then every configuration of the grid trained
once per seed and each adapter evaluated, all as ordinary runs linked to one `sweep` run.

Trials are identified by a fingerprint of what decides their result (the base model's eval
fingerprint: model weights, chat template, suite file and eval settings; the dataset's
fingerprint; every training setting including the seed). A trial whose fingerprint finished in
any earlier sweep is linked (reused), never retrained; a failed or interrupted one continues:
its finished training is kept, a stopped one resumes from its last checkpoint (else retrains).
`plan_trials` and `pending_trials` are pure over the ledger and `run_trial` runs one trial, so
trials could be handed to several machines; each trial row records the machine that trained it.
"""

import hashlib
import json
import socket
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.core.settings import LoraSettings, SamplingSettings
from labbench.eval.evaluation import EvalPlan, record_eval
from labbench.eval.suitetypes import Suite
from labbench.record.fingerprint import dataset_fingerprint, eval_fingerprint
from labbench.record.ledger import recording_run, run_hardware
from labbench.sweep.sweepfile import Sweep, describe, label_of, lora_settings, value_text
from labbench.sweep.sweepmemory import SweepMemory, plan_sweep_memory
from labbench.train.memory.check import MemoryOptions
from labbench.train.training import TrainOutcome, TrainPlan, record_training
from labbench.train.trainresume import resume_training, spares_training

# Settings the trainer's objects can show (trainercheck.effective_settings), and "data". The
# seed leaves no trace in them; keys=None means mlx-lm's default modules, whatever they are.
CHECKED = (
    *("rank", "scale", "dropout", "keys", "num_layers", "learning_rate", "warmup", "iters"),
    *("batch_size", "max_seq_length", "val_batches", "steps_per_report", "steps_per_eval"),
    *("save_every", "mask_prompt"),
)


@dataclass(frozen=True)
class Trial:
    configuration: dict[str, Any]  # the grid values, as in the file
    label: str
    seed: int
    settings: LoraSettings
    data: Path
    data_fingerprint: str
    fingerprint: str
    expect: dict[str, Any]  # what must reach the trainer


def base_eval_plan(sweep: Sweep, suite: Suite, model: str, **extra: Any) -> EvalPlan:
    """How the base model and every adapter are evaluated (`extra`: adapter, note, parent)."""
    sampling = SamplingSettings(
        temperature=sweep.eval.get("temperature", 0.0),
        max_tokens=sweep.eval.get("max_tokens"),
        seed=sweep.eval.get("seed"),
    )
    return EvalPlan(suite, model, sampling=sampling, epochs=sweep.eval.get("epochs", 1), **extra)


def base_fingerprint(plan: EvalPlan, db: Database | None = None) -> str:
    """The base model's eval fingerprint: model weights, chat template, suite, eval settings."""
    parts = eval_fingerprint(plan.model, None, plan.suite.path, plan.fingerprinted_sampling(), db)
    return str(parts["fingerprint"])


def plan_trials(sweep: Sweep, base_fingerprint: str) -> list[Trial]:
    """Every trial of the sweep, configuration by configuration, seed by seed."""
    fingerprints: dict[Path, str] = {}
    trials = []
    for configuration in sweep.configurations():
        data = configuration["data"] if "data" in configuration else sweep.data
        if data is None:  # parse_sweep requires data at the top or in the grid
            raise UserError(f"{sweep.path}: data: missing")
        if data not in fingerprints:
            fingerprints[data] = dataset_fingerprint(data)
        stated = {**sweep.fixed, **configuration}
        expect = {key: stated[key] for key in CHECKED if stated.get(key) is not None}
        expect["data"] = fingerprints[data]
        for seed in sweep.seeds:
            settings = lora_settings(sweep, configuration, seed)
            # grad_checkpoint (added later) changes memory, not results, and the preference
            # settings (settings.recorded()) are only there for those methods: trials recorded
            # before either existed keep their fingerprints.
            recorded = settings.recorded().items()
            trained = {k: v for k, v in recorded if k != "grad_checkpoint" or v}
            identity = {"base": base_fingerprint, "data": fingerprints[data], "settings": trained}
            digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
            trials.append(
                Trial(
                    configuration,
                    label_of(configuration),
                    seed,
                    settings,
                    data,
                    fingerprints[data],
                    digest[:16],
                    expect,
                )
            )
    return trials


def finished_trials(db: Database, trials: list[Trial]) -> dict[str, dict]:
    """Trial fingerprint -> the sweep_trials row of its earliest finished run, if any."""
    found: dict[str, dict] = {}
    for trial in trials:
        rows = db.query(
            "SELECT trials.* FROM sweep_trials AS trials"
            " JOIN runs AS train ON train.id = trials.train_run_id AND train.status = 'ok'"
            " JOIN runs AS eval ON eval.id = trials.eval_run_id AND eval.status = 'ok'"
            " WHERE trials.trial_fingerprint = ? AND trials.status = 'ok'"
            " ORDER BY trials.id LIMIT 1",
            [trial.fingerprint],
        )
        for row in rows:
            found[trial.fingerprint] = row
    return found


def pending_trials(db: Database, trials: list[Trial]) -> list[Trial]:
    """The trials no earlier sweep finished: what is left to train, on this or another machine."""
    done = finished_trials(db, trials)
    return [trial for trial in trials if trial.fingerprint not in done]


def machine() -> tuple[str, dict]:
    return socket.gethostname(), run_hardware()


def _trial_row(sweep_run_id: int, trial: Trial, **columns: Any) -> dict:
    return {
        "sweep_run_id": sweep_run_id,
        "trial_fingerprint": trial.fingerprint,
        "configuration": json.dumps(
            {k: value_text(v) if isinstance(v, Path) else v for k, v in trial.configuration.items()}
        ),
        "label": trial.label,
        "seed": trial.seed,
        **columns,
    }


def link_reused(db: Database, sweep_run_id: int, trial: Trial, earlier: dict) -> None:
    db.table("sweep_trials").insert(
        _trial_row(
            sweep_run_id,
            trial,
            status="ok",
            train_run_id=earlier["train_run_id"],
            eval_run_id=earlier["eval_run_id"],
            reused_from=earlier["reused_from"] or earlier["sweep_run_id"],
            host=earlier["host"],
            hardware=earlier["hardware"],
        )
    )


def run_trial(
    db: Database,
    sweep_run_id: int,
    trial: Trial,
    sweep: Sweep,
    suite: Suite,
    model: str,
    adapters_root: Path,
    memory: SweepMemory | None = None,
) -> int:
    """Train and evaluate one trial on this machine; returns its eval run id. Raises UserError
    (trial `failed`) or KeyboardInterrupt (trial `interrupted`); either way the row stays."""
    memory = memory or SweepMemory()
    host, hardware = machine()
    trials = db.table("sweep_trials")
    row_id = trials.insert(
        _trial_row(sweep_run_id, trial, status="running", host=host, hardware=json.dumps(hardware))
    ).last_pk
    assert isinstance(row_id, int)  # an integer primary key
    note = f"sweep {sweep_run_id}: {trial.label}, seed {trial.seed}"
    train_plan = TrainPlan(
        model=model,
        data=trial.data,
        data_fingerprint=trial.data_fingerprint,
        settings=trial.settings,
        adapters_root=adapters_root,
        note=note,
        parent_run_id=sweep_run_id,
        expect=trial.expect,
        memory_plan=memory.plans.get(trial.label),
        memory_ceiling=memory.ceiling,
    )

    def started(run_id: int, _adapter_dir: Path | None) -> None:
        trials.update(row_id, {"train_run_id": run_id})

    try:
        earlier = stopped_training(db, trial, train_plan)
        if earlier is None:
            trained = record_training(db, train_plan, on_start=started)
        elif earlier["status"] == "ok":  # trained; the trial stopped in its eval
            started(earlier["id"], None)
            trained = TrainOutcome(earlier["id"], Path(earlier["adapter"]), {})
        else:
            trained = resume_training(db, earlier["id"], train_plan, on_start=started)
        plan = base_eval_plan(
            sweep, suite, model, adapter=str(trained.adapter_dir), note=note,
            parent_run_id=sweep_run_id,
        )  # fmt: skip
        outcome = record_eval(db, plan)
        trials.update(row_id, {"eval_run_id": outcome.run_id})
        if outcome.error:
            raise UserError(f"eval run {outcome.run_id} failed: {outcome.error}")
    except KeyboardInterrupt:
        trials.update(row_id, {"status": "interrupted", "error": "interrupted by the user"})
        raise
    except BaseException as error:
        trials.update(row_id, {"status": "failed", "error": str(error).splitlines()[0]})
        raise
    trials.update(row_id, {"status": "ok"})
    return outcome.run_id


def stopped_training(db: Database, trial: Trial, plan: TrainPlan) -> dict | None:
    """The train run of an earlier, unfinished trial of this fingerprint that spares training:
    finished (the trial stopped in its eval), or stopped at a checkpoint it can resume from."""
    rows = db.query(
        "SELECT runs.* FROM sweep_trials AS trials JOIN runs ON runs.id = trials.train_run_id"
        " WHERE trials.trial_fingerprint = ? AND trials.status != 'ok'"
        " AND runs.status IN ('ok', 'interrupted', 'failed') ORDER BY trials.id DESC LIMIT 1",
        [trial.fingerprint],
    )
    row = next(iter(rows), None)
    return row if row is not None and spares_training(row, plan) else None


def identical_base_eval(db: Database, fingerprint: str) -> int | None:
    """The newest finished eval of the base model with this fingerprint, if there is one."""
    rows = list(
        db.query(
            "SELECT runs.id FROM runs JOIN eval_summaries ON eval_summaries.run_id = runs.id"
            " WHERE runs.kind = 'eval' AND runs.status = 'ok' AND runs.adapter IS NULL"
            " AND runs.fingerprint = ? ORDER BY runs.id DESC LIMIT 1",
            [fingerprint],
        )
    )
    return rows[0]["id"] if rows else None


def base_eval(db: Database, plan: EvalPlan, fingerprint: str) -> tuple[int, bool]:
    """The base model's eval: an identical finished one if the ledger has it (reused = True),
    else a new one."""
    earlier = identical_base_eval(db, fingerprint)
    if earlier is not None:
        return earlier, True
    outcome = record_eval(db, plan)
    if outcome.error:
        raise UserError(f"the base model's eval (run {outcome.run_id}) failed: {outcome.error}")
    return outcome.run_id, False


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_sweep(
    db: Database,
    sweep: Sweep,
    suite: Suite,
    model: str,
    adapters_root: Path,
    goal: str | None = None,
    note: str | None = None,
    memory: SweepMemory | None = None,
) -> int:
    """Record one `sweep` run: evaluate the base model (or reuse its identical eval), link
    finished trials, train the rest. Returns the sweep's run id."""
    plan = base_eval_plan(sweep, suite, model)
    base = base_fingerprint(plan, db)
    trials = plan_trials(sweep, base)
    config = describe(sweep)
    config["fingerprint"] = hashlib.sha256(
        json.dumps([t.fingerprint for t in trials]).encode()
    ).hexdigest()[:16]
    dataset = f"{sweep.data}@{trials[0].data_fingerprint[:8]}" if sweep.data else None
    with recording_run(
        db, "sweep", config, model=model, suite=suite.name, dataset=dataset, goal=goal, note=note
    ) as run:
        # The base model first: every trial's eval then has it as its baseline (Δ in the
        # journal), and a sweep stopped midway is judged against it too.
        say(f"sweep {run.id}: the base model's eval first")
        base_plan = replace(plan, note=f"sweep {run.id}: base model", parent_run_id=run.id)
        base_run, reused_base = base_eval(db, base_plan, base)
        if reused_base:
            say(f"reusing the identical finished base model eval, run {base_run}")
        run.update(summary={"base_eval_run": base_run})
        done = finished_trials(db, trials)
        earlier = sorted({row["reused_from"] or row["sweep_run_id"] for row in done.values()})
        configurations = len(sweep.configurations())
        say(
            f"run {run.id}: sweep {sweep.name}: {len(trials)} trials ({configurations}"
            f" configuration{'s' if configurations != 1 else ''} x {len(sweep.seeds)} seeds)"
        )
        if done:
            said = ", ".join(f"#{i}" for i in earlier)
            say(f"reusing {len(done)} identical finished trial(s) from sweep run(s) {said}")
        for trial in trials:
            if trial.fingerprint in done:
                link_reused(db, run.id, trial, done[trial.fingerprint])
        finished, trained = len(done), 0
        for trial in trials:
            if trial.fingerprint in done:
                continue
            say(
                f"sweep {run.id}: trial {finished + 1}/{len(trials)}"
                f" ({trial.label}, seed {trial.seed}): {trial.settings.iters} iterations,"
                f" then the eval; {finished} done"
            )
            run_trial(db, run.id, trial, sweep, suite, model, adapters_root, memory)
            finished, trained = finished + 1, trained + 1
        say(f"sweep {run.id}: {len(trials)}/{len(trials)} trials done")
        run.update(
            summary={
                "base_eval_run": base_run,
                "trials": len(trials),
                "trained": trained,
                "reused": len(done),
                "reused_from": earlier,
            }
        )
    return run.id


def sweep_command(
    sweep: Sweep,
    suite: Suite,
    model: str,
    ledger_arg: str | None,
    goal: str | None,
    note: str | None,
    pending: bool,
    memory_options: MemoryOptions | None = None,
) -> int:
    """What `just sweep` (and `just train seeds=...`) does once its inputs are checked (the
    suite loaded, the model resolved): run the sweep and print its table and verdict, or with
    `pending` list the trials left to train (the ledger must exist; nothing is written).
    Before the ledger is opened, each configuration's memory is planned (sweepmemory)."""
    from labbench.present import recording
    from labbench.present.sweepreport import terminal_report

    if pending:
        with recording.reading_ledger(ledger_arg) as ledger:
            trials = plan_trials(sweep, base_fingerprint(base_eval_plan(sweep, suite, model)))
            left = pending_trials(ledger.db, trials)
        print(f"{len(left)} of {len(trials)} trials left to train")
        for trial in left:
            print(f"{trial.fingerprint}  {trial.label}, seed {trial.seed}")
        return 0
    options = memory_options or MemoryOptions()
    memory = plan_sweep_memory(sweep, model, options)
    if options.plan == "only":
        return 0
    with recording.recording_ledger(ledger_arg) as ledger:
        sweep_run_id = run_sweep(
            ledger.db, sweep, suite, model, ledger.adapters_dir, goal, note, memory
        )
        print(terminal_report(ledger.db, sweep_run_id))
    say(f"recorded as sweep run {sweep_run_id} in {ledger.path}")
    return 0
