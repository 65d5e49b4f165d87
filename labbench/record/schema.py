"""The ledger's schema: one named migration per change, applied in order, never edited after
it shipped (a fix is a new migration). sqlite-utils runs each one in a transaction.
"""

import json

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from labbench.record import views

migrations = Migrations("labbench")


@migrations()
def m001_runs_and_eval_results(db: Database) -> None:
    db.table("runs").create(
        {
            "id": int,
            "kind": str,  # eval, bench, train, demo, ...
            "status": str,  # running, ok, failed, interrupted
            "model": str,
            "adapter": str,
            "suite": str,
            "dataset": str,
            "started_at": str,
            "finished_at": str,
            "duration_s": float,
            "error": str,
            "command": str,  # JSON list: the argv as typed
            "config": str,  # JSON: the resolved configuration
            "git_commit": str,
            "git_dirty": int,
            "python_version": str,
            "mlx_version": str,
            "mlx_lm_version": str,
            "platform": str,
            "goal": str,
            "note": str,
            "summary": str,  # JSON: the run's headline numbers
            "output_excerpt": str,  # the last lines of raw output (server log, trainer)
        },
        pk="id",
    )
    db.table("runs").create_index(["kind", "status"])
    db.table("eval_results").create(
        {
            "id": int,
            "run_id": int,
            "prompt_id": str,
            "category": str,
            "score": float,
            "explanation": str,
            "response": str,
            "tool_calls": str,  # JSON list of {"name", "arguments"}
            "finish_reason": str,
            "error": str,
            "duration_ms": float,
            "prompt_tokens": int,
            "completion_tokens": int,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("eval_results").create_index(["run_id", "prompt_id"], unique=True)


@migrations()
def m002_score_views(db: Database) -> None:
    # The scores of a run are derived from its eval_results in SQL, never stored twice, so the
    # ledger, the journal and Datasette cannot disagree. Category = mean of its prompts
    # (failed prompts count 0); overall = mean of the categories; success = share without error.
    db.create_view(
        "category_scores",
        """
        SELECT run_id, category, AVG(score) AS score, COUNT(*) AS prompts,
               SUM(error IS NOT NULL) AS failures
        FROM eval_results GROUP BY run_id, category
        """,
    )
    db.create_view(
        "eval_summaries",
        """
        SELECT runs.id AS run_id, runs.status, runs.model, runs.adapter, runs.suite,
               runs.started_at, overall.score AS overall, totals.success_rate, totals.prompts,
               totals.failures
        FROM runs
        JOIN (SELECT run_id, AVG(score) AS score FROM category_scores GROUP BY run_id) AS overall
          ON overall.run_id = runs.id
        JOIN (SELECT run_id, AVG(error IS NULL) AS success_rate, COUNT(*) AS prompts,
                     SUM(error IS NOT NULL) AS failures
              FROM eval_results GROUP BY run_id) AS totals
          ON totals.run_id = runs.id
        WHERE runs.kind = 'eval'
        """,
    )


@migrations()
def m003_fingerprints(db: Database) -> None:
    db.table("runs").add_column("fingerprint", str)  # combined hash of what an eval ran
    db.table("runs").add_column(
        "fingerprint_parts", str
    )  # JSON: model, adapter, suite, template, ...
    db.table("file_hashes").create(
        {"path": str, "size": int, "mtime_ns": int, "sha256": str}, pk="path"
    )


@migrations()
def m004_training_notes_files(db: Database) -> None:
    db.table("runs").add_column("parent_run_id", int)  # e.g. a checkpoint eval's train run
    db.table("train_reports").create(
        {
            "id": int,
            "run_id": int,
            "iteration": int,
            "split": str,  # train or val
            "loss": float,
            "learning_rate": float,
            "iterations_per_second": float,  # mlx-lm's own figure for the report window
            "tokens_per_second": float,
            "trained_tokens": int,
            "peak_memory_gb": float,  # mx.get_peak_memory(), not the process RSS
            "window_seconds": float,  # our wall clock between reports
            "val_seconds": float,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("train_reports").create_index(["run_id", "iteration"])
    db.table("checkpoints").create(
        {
            "id": int,
            "run_id": int,
            "iteration": int,
            "path": str,
            "eval_run_id": int,
            "score": float,
            "best": int,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("run_notes").create(
        {"id": int, "run_id": int, "created_at": str, "kind": str, "text": str},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("run_files").create(
        {"id": int, "run_id": int, "kind": str, "path": str},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db.table("run_files").create_index(["run_id", "path"], unique=True)


@migrations()
def m005_views_for_datasette(db: Database) -> None:
    # What `datasette ledger.db` (and `just browse`, with metadata.yaml) shows beside the tables.
    # Views have no order: sort in the query (`ORDER BY suite, run_id`) or with Datasette's _sort.
    # cumulative_results is the journal's Cumulative Results table, one row per finished eval;
    # `categories` is a JSON object {category: score} for the per-category columns, and delta
    # is the change of overall from the previous finished eval of the same suite.
    db.create_view(
        "cumulative_results",
        """
        SELECT runs.id AS run_id, runs.suite,
               '#' || runs.id || CASE WHEN COALESCE(runs.adapter, '') = '' THEN ' Baseline'
                                      ELSE ' Trained' END AS step,
               runs.dataset, runs.adapter, runs.model, summaries.overall,
               json_extract(runs.summary, '$.overall_ci_low') AS ci_low,
               json_extract(runs.summary, '$.overall_ci_high') AS ci_high,
               summaries.overall
                 - LAG(summaries.overall) OVER (PARTITION BY runs.suite ORDER BY runs.id)
                 AS delta,
               categories.categories, summaries.success_rate, summaries.prompts,
               runs.fingerprint, runs.note, runs.started_at
        FROM runs JOIN eval_summaries AS summaries ON summaries.run_id = runs.id
        JOIN (SELECT run_id, json_group_object(category, score) AS categories
              FROM category_scores GROUP BY run_id) AS categories
          ON categories.run_id = runs.id
        WHERE runs.kind = 'eval' AND runs.status = 'ok'
        """,
    )
    # Failed or interrupted runs of any kind (what = 'run'), and prompts that ended in an error
    # in any run (what = 'prompt', with the prompt's own error).
    db.create_view(
        "failures",
        """
        SELECT 'run' AS what, id AS run_id, kind, status, model, adapter, suite,
               NULL AS prompt_id, NULL AS category, error, started_at
        FROM runs WHERE status IN ('failed', 'interrupted')
        UNION ALL
        SELECT 'prompt', runs.id, runs.kind, runs.status, runs.model, runs.adapter, runs.suite,
               eval_results.prompt_id, eval_results.category, eval_results.error,
               runs.started_at
        FROM eval_results JOIN runs ON runs.id = eval_results.run_id
        WHERE eval_results.error IS NOT NULL
        """,
    )
    # One prompt across runs: filter on prompt_id (?prompt_id=... in Datasette).
    db.create_view(
        "prompt_history",
        """
        SELECT eval_results.prompt_id, eval_results.run_id, runs.suite, runs.model,
               runs.adapter, runs.status, eval_results.category, eval_results.score,
               eval_results.finish_reason, eval_results.error, eval_results.explanation,
               eval_results.response, runs.started_at
        FROM eval_results JOIN runs ON runs.id = eval_results.run_id
        """,
    )
    # Covering indexes: the score views read (run_id, category, score, error) in order without
    # touching the rows, and prompt_history finds one prompt's rows directly.
    db.table("eval_results").create_index(["run_id", "category", "score", "error"])
    db.table("eval_results").create_index(["prompt_id"])


@migrations()
def m006_hardware(db: Database) -> None:
    # JSON: cpu, cores, memory_bytes, os, machine, mlx_device, blas, blas_library; the BLAS is
    # the one labbench resolved for the server or training process of the run (see blas.py).
    db.table("runs").add_column("hardware", str)


@migrations()
def m007_seeds_and_epochs(db: Database) -> None:
    # `epochs=N` samples each prompt N times: one eval_results row per (prompt, epoch), numbered
    # from 1; earlier results are epoch 1. A prompt's score is the mean over its epochs
    # (prompt_scores), a category's the mean of its prompts, overall the mean of the categories,
    # so repeats never weigh one prompt more than another. An unscored prompt (score NULL) is
    # left out of the means.
    db.table("eval_results").add_column("epoch", int, not_null_default=1)
    db.execute("DROP INDEX IF EXISTS idx_eval_results_run_id_prompt_id")
    db.table("eval_results").create_index(["run_id", "prompt_id", "epoch"], unique=True)
    # The covering index now serves prompt_scores, which groups by (run_id, prompt_id).
    db.execute("DROP INDEX IF EXISTS idx_eval_results_run_id_category_score_error")
    db.table("eval_results").create_index(["run_id", "prompt_id", "category", "score", "error"])
    db.create_view("prompt_scores", views.PROMPT_SCORES, replace=True)
    db.create_view("category_scores", views.CATEGORY_SCORES, replace=True)
    db.create_view("eval_summaries", views.EVAL_SUMMARIES, replace=True)


@migrations()
def m008_executed_tests(db: Database) -> None:
    # The verdict of a prompt's expect_tests (passed, failed, error, timed out, no code found;
    # NULL when the prompt has none or they were not run) and the run's output, truncated.
    # A prompt whose only part is tests not run (exec=false) has a NULL score: the views' AVG
    # leaves it out, so it is neither passed nor failed.
    db.table("eval_results").add_column("tests_verdict", str)
    db.table("eval_results").add_column("tests_output", str)
    # One prompt across runs shows its verdict, so a fix that made tests pass can be seen.
    db.create_view(
        "prompt_history",
        """
        SELECT eval_results.prompt_id, eval_results.run_id, eval_results.epoch, runs.suite,
               runs.model, runs.adapter, runs.status, eval_results.category, eval_results.score,
               eval_results.tests_verdict, eval_results.finish_reason, eval_results.error,
               eval_results.explanation, eval_results.response, runs.started_at
        FROM eval_results JOIN runs ON runs.id = eval_results.run_id
        """,
        replace=True,
    )


@migrations()
def m009_journal_views(db: Database) -> None:
    # Stored CIs made order-free, and the index of the journal's identical-run check. The
    # cumulative_results view with Δ against the right baseline is m011's
    # (labbench/record/views.py), where the fuse lineage it needs exists.
    db.table("runs").create_index(["fingerprint"])  # the journal's identical-run check
    _recompute_intervals(db)


def _recompute_intervals(db: Database) -> None:
    """CIs stored before m009 depended on the order prompts finished in: recompute every
    finished eval's from its prompts' scores with evaluation.interval_summary."""
    from labbench.core.stats import interval_summary

    rows = db.execute(
        "SELECT id, summary FROM runs WHERE kind = 'eval' AND status != 'running' "
        "AND id IN (SELECT run_id FROM eval_results) ORDER BY id"
    ).fetchall()
    for run_id, summary in rows:
        prompts = db.query(
            "SELECT prompt_id, category, score FROM prompt_scores WHERE run_id = ?", [run_id]
        )
        stored = json.loads(summary or "{}") | interval_summary(list(prompts))
        db.execute(
            "UPDATE runs SET summary = ? WHERE id = ?", [json.dumps(stored, sort_keys=True), run_id]
        )


@migrations()
def m010_sweeps(db: Database) -> None:
    # One row per trial of a `sweep` run: a configuration (its grid values as JSON, and as the
    # label the journal shows) trained with one seed, then evaluated. A trial found finished in
    # an earlier sweep is linked, not retrained: `reused_from` names that sweep, and the
    # train/eval runs are the earlier ones. `host` and `hardware` are the machine that trained it.
    db.table("sweep_trials").create(
        {
            "id": int,
            "sweep_run_id": int,
            "trial_fingerprint": str,  # model, suite, eval settings, dataset, settings and seed
            "configuration": str,  # JSON {axis: value}
            "label": str,  # "learning_rate=0.0003, rank=16" ("fixed settings" without a grid)
            "seed": int,
            "status": str,  # running, ok, failed, interrupted
            "train_run_id": int,
            "eval_run_id": int,
            "reused_from": int,
            "host": str,
            "hardware": str,
            "error": str,
        },
        pk="id",
        foreign_keys=[
            ("sweep_run_id", "runs", "id"),
            ("train_run_id", "runs", "id"),
            ("eval_run_id", "runs", "id"),
        ],
    )
    db.table("sweep_trials").create_index(["sweep_run_id"])
    db.table("sweep_trials").create_index(["trial_fingerprint"])
    # The journal's sweep table: per sweep and configuration, for overall (category
    # '(overall)') and each category, the finished seeds, their mean and sample variance (the
    # journal shows its square root and the t-interval of the mean across seeds).
    db.create_view("sweep_scores", views.SWEEP_SCORES)


@migrations()
def m011_fuse(db: Database) -> None:
    # One row per `fuse` run: an adapter (a training run's checkpoint) fused into its base
    # model, maybe quantized, written to `output`; and how its eval compared with the
    # adapter's. An eval whose model is a fuse's output is a derived model whose base model is
    # the fuse's base (the lineage m009's comment anticipated).
    db.table("fuses").create(
        {
            "fuse_run_id": int,
            "train_run_id": int,
            "checkpoint": int,  # the training iteration fused (None: the adapter's final file)
            "adapter": str,  # the adapter directory fused
            "base_model": str,
            "base_fingerprint": str,
            "base_bits": int,  # the base's quantization (None: full precision)
            "dequantized": int,
            "bits": int,  # the fused model's quantization (None: not quantized)
            "group_size": int,
            "output": str,  # the fused model's directory
            "output_fingerprint": str,
            "warning": str,
            "verify_suite": str,
            "adapter_eval_run_id": int,
            "fused_eval_run_id": int,
            "verdict": str,  # "fused matches adapter", "fused is worse (p = 0.012)", ...
            "p_value": float,
        },
        pk="fuse_run_id",
        foreign_keys=[
            ("fuse_run_id", "runs", "id"),
            ("train_run_id", "runs", "id"),
            ("adapter_eval_run_id", "runs", "id"),
            ("fused_eval_run_id", "runs", "id"),
        ],
    )
    db.table("fuses").create_index(["output"])
    db.execute("DROP VIEW IF EXISTS cumulative_results")
    db.create_view("cumulative_results", views.CUMULATIVE_RESULTS)


@migrations()
def m012_scale_out(db: Database) -> None:
    # The server that answered each result: evals spread over several endpoints or replicas
    # (None for results recorded before). A distributed training's world size, hosts and
    # backend go in its runs.config under "distributed".
    db.table("eval_results").add_column("endpoint", str)


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
def m014_run_resumes(db: Database) -> None:
    # `eval resume=` and `train resume=` continue a stopped run in its own row: one row per
    # resume (when; status and error before; `kept`: an eval's results or a training's last
    # checkpoint; the command and code). runs.duration_s adds up the sessions, not the pause.
    columns = {"id": int, "run_id": int, "resumed_at": str, "previous_status": str}
    columns |= {"previous_error": str, "kept": int, "command": str, "git_commit": str}
    db.table("run_resumes").create(columns, pk="id", foreign_keys=[("run_id", "runs", "id")])
    db.table("run_resumes").create_index(["run_id"])
