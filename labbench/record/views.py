"""The SQL of the ledger's larger views, each part of the migration that creates it
(labbench/record/schema.py): once released, a change is a new migration with a new constant,
never an edit of one here.

m007: a prompt's score is the mean over its epochs (prompt_scores), a category's the mean of
its prompts, overall the mean of the categories, so repeats never weigh one prompt more than
another; an unscored prompt (score NULL) is left out of the means. m010: sweep_scores.

m011: cumulative_results, one row per finished eval, with Δ against the right baseline. A run's
baseline is the most recent earlier finished eval of the same suite (name and file content),
base model, sampling settings (temperature, max_tokens, seed, epochs), prompt set (limit),
execution of tests (exec) and endpoint kind that ran the base model alone (no adapter, not
fused). For an adapter's or a fused model's row that is its base model's eval; for a base
model's row the previous run of the identical configuration (a reproducibility check). A fused
model's base model is its fuse's. Every value is looked up per row (no window, no join over the
whole table), and the inner query is grouped by run_id, so that SQLite computes each lookup once
and a filter on run_id (`WHERE run_id >= ?`, what the journal asks) costs only the rows asked
for. overall agrees with eval_summaries (tests/test_journal.py checks it). The *_pct and
delta_pts columns are the same numbers as text, for Datasette.
"""

PROMPT_SCORES = """
        SELECT run_id, prompt_id, category, AVG(score) AS score, COUNT(*) AS samples,
               SUM(error IS NOT NULL) AS failures
        FROM eval_results GROUP BY run_id, prompt_id
        """

CATEGORY_SCORES = """
        SELECT run_id, category, AVG(score) AS score, COUNT(*) AS prompts,
               SUM(failures > 0) AS failures
        FROM prompt_scores GROUP BY run_id, category
        """

EVAL_SUMMARIES = """
        SELECT runs.id AS run_id, runs.status, runs.model, runs.adapter, runs.suite,
               runs.started_at, overall.score AS overall, totals.success_rate, totals.prompts,
               totals.failures, totals.samples
        FROM runs
        JOIN (SELECT run_id, AVG(score) AS score FROM category_scores GROUP BY run_id) AS overall
          ON overall.run_id = runs.id
        JOIN (SELECT run_id, SUM(samples - failures) * 1.0 / SUM(samples) AS success_rate,
                     COUNT(*) AS prompts, SUM(failures > 0) AS failures,
                     SUM(samples) AS samples
              FROM prompt_scores GROUP BY run_id) AS totals
          ON totals.run_id = runs.id
        WHERE runs.kind = 'eval'
        """

SWEEP_SCORES = """
        SELECT trials.sweep_run_id, trials.label AS configuration, scores.category,
               COUNT(*) AS seeds, AVG(scores.score) AS mean,
               (SUM(scores.score * scores.score) - SUM(scores.score) * SUM(scores.score)
                 / COUNT(*)) / (COUNT(*) - 1) AS variance,
               MIN(scores.score) AS lowest, MAX(scores.score) AS highest
        FROM sweep_trials AS trials
        JOIN (SELECT run_id, '(overall)' AS category, overall AS score FROM eval_summaries
              UNION ALL
              SELECT run_id, category, score FROM category_scores) AS scores
          ON scores.run_id = trials.eval_run_id
        WHERE trials.status = 'ok'
        GROUP BY trials.sweep_run_id, trials.label, scores.category
        """


# The sampling settings and endpoint of an eval, as the baseline rule compares them. A missing
# temperature is the default 0; the endpoint is `url` for a server we did not start (url= and
# no server_pid), else `server`.
EVAL_SETTINGS = """
    COALESCE(json_extract(runs.config, '$.sampling.temperature'), 0) AS temperature,
    json_extract(runs.config, '$.sampling.max_tokens') AS max_tokens,
    json_extract(runs.config, '$.sampling.seed') AS seed,
    COALESCE(json_extract(runs.config, '$.epochs'), 1) AS epochs,
    json_extract(runs.config, '$.limit') AS prompt_limit,
    json_extract(runs.fingerprint_parts, '$.suite') AS suite_sha,
    COALESCE(json_extract(runs.config, '$.execution.enabled'), 1) AS executed,
    CASE WHEN json_extract(runs.config, '$.url') IS NOT NULL
              AND json_extract(runs.config, '$.server_pid') IS NULL
         THEN 'url' ELSE 'server' END AS endpoint
"""


def category_means(run: str) -> str:
    """A run's category scores as category_scores defines them (a prompt's score is the mean
    of its rows), read from eval_results by run id so that SQLite looks up only that run:
    category_scores itself is aggregated over the whole table first, which made the journal's
    few rows cost as much as all 10,000."""
    return f"""(SELECT category, AVG(score) AS score FROM
                 (SELECT category, AVG(score) AS score FROM eval_results
                  WHERE eval_results.run_id = {run} GROUP BY prompt_id, category)
               GROUP BY category)"""


_BASELINE_OVERALL = f"(SELECT AVG(score) FROM {category_means('baseline_run_id')})"

CUMULATIVE_RESULTS = f"""
        WITH evals AS NOT MATERIALIZED (
          SELECT runs.*, COALESCE(fuses.base_model, runs.model) AS base_model,
                 COALESCE(runs.adapter, '') != '' OR fuses.fuse_run_id IS NOT NULL AS derived,
                 fuses.fuse_run_id, fuses.bits AS fused_bits, fuses.adapter AS fused_adapter,
                 fuses.train_run_id AS fused_train_run_id, fuses.checkpoint AS fused_checkpoint,
                 fuses.warning AS fuse_warning,
                 {EVAL_SETTINGS}
          FROM runs LEFT JOIN fuses ON fuses.output = runs.model
          WHERE runs.kind = 'eval' AND runs.status = 'ok'
            AND EXISTS (SELECT 1 FROM eval_results WHERE eval_results.run_id = runs.id)
        ),
        scored AS (
          SELECT row.id AS run_id, row.suite, row.model, row.base_model, row.adapter,
                 row.derived, row.dataset, row.endpoint, row.temperature, row.max_tokens,
                 row.seed, row.epochs, row.prompt_limit, row.executed, row.fingerprint,
                 row.note, row.started_at, row.fuse_run_id, row.fused_bits, row.fused_adapter,
                 row.fused_train_run_id, row.fused_checkpoint, row.fuse_warning,
                 json_extract(row.summary, '$.pass_at_k') AS pass_at_k,
                 json_extract(row.summary, '$.overall_ci_low') AS ci_low,
                 json_extract(row.summary, '$.overall_ci_high') AS ci_high,
                 json_extract(row.summary, '$.overall_ci_method') AS ci_method,
                 (SELECT base.id FROM evals AS base
                  WHERE base.id < row.id AND NOT base.derived AND base.suite IS row.suite
                    AND base.base_model IS row.base_model
                    AND base.temperature IS row.temperature
                    AND base.max_tokens IS row.max_tokens AND base.seed IS row.seed
                    AND base.epochs IS row.epochs AND base.prompt_limit IS row.prompt_limit
                    AND base.executed IS row.executed AND base.endpoint IS row.endpoint
                    AND base.suite_sha IS row.suite_sha
                  ORDER BY base.id DESC LIMIT 1) AS baseline_run_id,
                 (SELECT AVG(score) FROM {category_means("row.id")}) AS overall,
                 (SELECT json_group_object(category, score) FROM {category_means("row.id")})
                   AS categories,
                 (SELECT AVG(error IS NULL) FROM eval_results WHERE run_id = row.id)
                   AS success_rate,
                 (SELECT COUNT(DISTINCT prompt_id) FROM eval_results WHERE run_id = row.id)
                   AS prompts
          FROM evals AS row GROUP BY row.id
        )
        SELECT run_id, suite,
               '#' || run_id || CASE WHEN derived THEN ' Trained' ELSE ' Baseline' END AS step,
               model, adapter, dataset,
               printf('%.1f%%', 100 * overall) AS overall_pct,
               CASE WHEN ci_low IS NOT NULL
                    THEN printf('%.1f%%–%.1f%%', 100 * ci_low, 100 * ci_high)
                    ELSE ci_method END AS ci_pct,
               CASE WHEN baseline_run_id IS NOT NULL
                    THEN printf('%+.1f pts vs #%d', 100 * (overall - {_BASELINE_OVERALL}),
                                baseline_run_id) END AS delta_pts,
               base_model, endpoint, temperature, max_tokens, seed, epochs, prompt_limit,
               executed, overall, ci_low, ci_high, ci_method, baseline_run_id,
               overall - {_BASELINE_OVERALL} AS delta,
               categories, pass_at_k, success_rate, prompts, fingerprint, note, started_at,
               fuse_run_id, fused_bits, fused_adapter, fused_train_run_id, fused_checkpoint,
               fuse_warning
        FROM scored
        """
