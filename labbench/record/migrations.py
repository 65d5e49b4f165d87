"""The ledger's migrations, complete: m001-m012 are in schema.py, and each later one is appended
here, in order (sqlite-utils applies them in the order they are registered). Import
`migrations` from this module, never from schema.py alone, so none is missed.
"""

from sqlite_utils import Database

from labbench.record.schema import migrations

__all__ = ["migrations"]


@migrations()
def m013_tool_call_verdicts(db: Database) -> None:
    # How each answer's tool calls were decoded: "tool_calls" (the API's list), "text:FORMAT"
    # (hermes, qwen3-xml, mistral, llama, json, pythonic; several joined by "+") or "none".
    # A BFCL question's verdict is BFCL's own: error_type is the checker's
    # (simple_function_checker:missing_required, ...), error_text its error list as JSON, and
    # error_kind our name for it (wrong function, missing required, ..., cut off at
    # max_tokens). error_kind is also "too long for the model's context" for a prompt of any
    # suite that was not sent because it could not fit.
    for column in ("decoded_as", "error_type", "error_kind", "error_text"):
        db.table("eval_results").add_column(column, str)


@migrations()
def m014_memory_plan(db: Database) -> None:
    # A training's (train, bench) peak memory as the plan predicted it before anything was
    # loaded, and as mlx measured it (the largest mx.get_peak_memory() of its reports), in GB
    # of 1e9 bytes. memory_predictions puts them side by side: how good the plan is, run by run.
    db.table("runs").add_column("predicted_peak_gb", float)
    db.table("runs").add_column("measured_peak_gb", float)
    db.create_view(
        "memory_predictions",
        """
        SELECT id AS run_id, kind, status, model, started_at,
               json_extract(config, '$.batch_size') AS batch_size,
               json_extract(config, '$.max_seq_length') AS max_seq_length,
               json_extract(config, '$.rank') AS rank,
               json_extract(config, '$.num_layers') AS num_layers,
               json_extract(config, '$.grad_checkpoint') AS grad_checkpoint,
               json_extract(config, '$.memory_plan.length') AS planned_length,
               predicted_peak_gb, measured_peak_gb,
               measured_peak_gb / predicted_peak_gb AS measured_over_predicted
        FROM runs WHERE predicted_peak_gb IS NOT NULL
        """,
    )


@migrations()
def m015_preference_training(db: Database) -> None:
    # Each training method's own numbers beyond the loss (DPO's reward margins and accuracies,
    # GRPO's rewards and KL...), one row per report and name; split is train, val, or step for
    # the mean reward of each GRPO step. The method and its settings are in runs.config.
    db.table("train_metrics").create(
        {"id": int, "run_id": int, "iteration": int, "split": str, "name": str, "value": float},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("train_metrics").create_index(["run_id", "name", "iteration"])
    # Every GRPO completion sampled, and what the eval's scorer made of it (its reward).
    db.table("rollouts").create(
        {
            "id": int,
            "run_id": int,
            "step": int,
            "prompt_id": str,
            "completion": str,
            "score": float,  # the scorer's score: the "score" reward
            "explanation": str,
            "reward": float,  # the weighted sum of every reward
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("rollouts").create_index(["run_id", "step"])


@migrations()
def m016_run_resumes(db: Database) -> None:
    # `eval resume=` and `train resume=` continue a stopped run in its own row: one row per
    # resume (when; status and error before; `kept`: an eval's results or a training's last
    # checkpoint; the command and code). runs.duration_s adds up the sessions, not the pause.
    columns = {"id": int, "run_id": int, "resumed_at": str, "previous_status": str}
    columns |= {"previous_error": str, "kept": int, "command": str, "git_commit": str}
    db.table("run_resumes").create(columns, pk="id", foreign_keys=[("run_id", "runs", "id")])
    db.table("run_resumes").create_index(["run_id"])
