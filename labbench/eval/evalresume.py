"""`just eval resume=RUN`: finish an interrupted or failed eval in its own run row.

Before anything is asked, the run's fingerprint is taken again from what is on disk now (model
weights and config, adapter, suite file, chat template, sampling settings, prompt limit and
exec): a resume of anything else would mix two evals in one run, so any difference is refused,
named. Then only the (prompt, epoch) pairs without a result are asked, and the run's summary
(CI, pass@k) is computed over all its results, old and new.
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.core.formatting import eval_settings_text
from labbench.core.settings import SamplingSettings
from labbench.eval.evaluation import EvalOutcome, EvalPlan, evaluate_into, plan_fingerprint, settle
from labbench.eval.humaneval import HUMANEVAL
from labbench.eval.suite import load_suite
from labbench.eval.suitetypes import Suite
from labbench.record.ledger import Run
from labbench.record.resumes import resuming_run, stopped_run

# What each fingerprint part is, as a refusal names it.
PART_NAMES = {
    "model": "the model's weights or config",
    "model_name": "the model's name",
    "adapter": "the adapter",
    "suite": "the suite file",
    "chat_template": "the chat template",
    "sampling": "the sampling settings",
    "scope": "the prompt limit or exec setting",
}


def changed_parts(recorded: dict, now: dict) -> list[str]:
    """The fingerprint parts that differ between a run's record and now, by name."""
    keys = sorted(set(recorded) | set(now), key=lambda key: list(PART_NAMES).index(key))
    return [PART_NAMES[key] for key in keys if recorded.get(key) != now.get(key)]


def plan_of_run(
    row: dict, concurrency: int | None, timeout_s: float | None, port: int | None = None
) -> EvalPlan:
    """The plan a recorded eval ran with, from its runs row (the suite loaded again);
    `concurrency`, `timeout_s` and our server's `port` may differ (they change no score).
    Raises UserError when a file it used is gone."""
    config = json.loads(row["config"])
    suite_path = Path(config["suite_path"])
    if row["suite"] != HUMANEVAL and not suite_path.is_file():
        raise UserError(f"run {row['id']}'s suite file {suite_path} is gone")
    if row["adapter"] and not Path(row["adapter"]).is_dir():
        raise UserError(f"run {row['id']}'s adapter {row['adapter']} is gone")
    recorded = config["sampling"]
    sampling = SamplingSettings(
        temperature=recorded["temperature"],
        max_tokens=recorded["max_tokens"],
        stop=tuple(recorded["stop"]),
        seed=recorded.get("seed"),
    )
    ours = "server_pid" in config or config.get("url") is None  # servers we started
    url = None if ours else config["url"]
    suite = _suite(row, config)
    return EvalPlan(
        suite=replace(suite, prompts=suite.prompts[: config.get("limit")]),
        model=row["model"] if ours or row["model"] != url else None,
        adapter=row["adapter"],
        url=url,
        replicas=config.get("replicas", 1),
        port=port,
        sampling=sampling,
        concurrency=concurrency or config["concurrency"],
        timeout_s=timeout_s or config["request_timeout_s"],
        epochs=config.get("epochs", 1),
        parent_run_id=row["parent_run_id"],
        limit=config.get("limit"),
        suite_prompts=len(suite.prompts),
    )


def _suite(row: dict, config: dict) -> Suite:
    """The run's suite as it was run (exec), before its cut to `limit` prompts."""
    suite = load_suite(HUMANEVAL if row["suite"] == HUMANEVAL else config["suite_path"])
    exec_tests = config.get("exec")
    if exec_tests is None:  # recorded before "exec" was: only a run with tests says
        execution = config.get("execution")
        exec_tests = execution["enabled"] if execution else suite.exec_tests
    return replace(suite, exec_tests=exec_tests)


def check_unchanged(db: Database, row: dict, plan: EvalPlan) -> None:
    """Refuse, naming what changed, when the run's fingerprint differs from what is on disk."""
    if not row["fingerprint_parts"]:
        raise UserError(f"run {row['id']} has no fingerprint to check a resume against")
    recorded = json.loads(row["fingerprint_parts"])
    now = plan_fingerprint(plan, db)
    now.pop("fingerprint")
    changed = changed_parts(recorded, now)
    if changed:
        raise UserError(
            f"run {row['id']} cannot be resumed: {' and '.join(changed)} changed since it ran"
            " (a new `just eval` evaluates them as they are now)"
        )


def results_of(db: Database, run_id: int) -> frozenset[tuple[str, int]]:
    """The (prompt id, epoch) pairs the run has a result for."""
    rows = db.query("SELECT prompt_id, epoch FROM eval_results WHERE run_id = ?", [run_id])
    return frozenset((row["prompt_id"], row["epoch"]) for row in rows)


def resume_eval(
    db: Database,
    run_id: int,
    concurrency: int | None = None,
    timeout_s: float | None = None,
    port: int | None = None,
) -> tuple[EvalPlan, EvalOutcome]:
    """Continue eval run `run_id`: check, then ask what it lacks. Returns the plan and the
    outcome as record_eval does (Ctrl-C raises EvalInterrupted); UserError before anything
    is asked when the run cannot be resumed."""
    row = stopped_run(db, run_id, "eval")
    plan = plan_of_run(row, concurrency, timeout_s, port)
    check_unchanged(db, row, plan)
    done = results_of(db, run_id)
    started: list[Run] = []

    def run_it() -> None:
        with resuming_run(db, run_id, kept=len(done)) as run:
            started.append(run)
            config = json.loads(row["config"])
            changed = {"concurrency": plan.concurrency, "request_timeout_s": plan.timeout_s}
            run.update(summary=None, output_excerpt=None, config=config | changed)
            missing = plan.planned() - len(done)
            print(
                f"run {run_id}: resuming: {len(done)} of {plan.planned()} results kept,"
                f" asking the other {missing}",
                file=sys.stderr,
            )
            print(f"settings: {eval_settings_text(plan.config())}", file=sys.stderr)
            evaluate_into(run, plan, done)

    return plan, settle(db, started, run_it)
