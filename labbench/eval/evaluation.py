"""Send a suite's prompts to an OpenAI-compatible server, score them, and record each result.

Used by `scripts/eval.py`, and by training to score checkpoints. The prompts are asked
concurrently and each result is written as it completes (labbench/eval/asking.py); a stopped
run is continued by labbench/eval/evalresume.py.
"""

import json
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from labbench.core.errors import UserError, describe_exit
from labbench.core.formatting import eval_settings_text
from labbench.core.settings import EvalSettings, SamplingSettings
from labbench.core.stats import run_summary
from labbench.eval.adapterbase import BaseCheck, base_of_adapter, check_base
from labbench.eval.asking import run_suite
from labbench.eval.bfcl.summary import bfcl_summary
from labbench.eval.prompting import TOO_LONG, tests_workers
from labbench.eval.suitetypes import Suite
from labbench.record.fingerprint import eval_fingerprint, hub_snapshot
from labbench.record.ledger import (
    Run,
    dataset_of_adapter,
    dataset_of_fused_model,
    recording_run,
    run_scores,
)
from labbench.sandbox.execution import containment_summary
from labbench.serving.chatclient import (
    URL_FORMS,
    Endpoint,
    ServerGone,
)
from labbench.serving.contextfit import context_length, prompt_lengths
from labbench.serving.endpoints import EndpointPool, check_same_model

DEFAULTS = EvalSettings()


@dataclass(frozen=True)
class EvalPlan:
    """What to evaluate. `model` is resolved (a directory or hub id); with `url` we start
    no server and `model` is the name to send, if any."""

    suite: Suite
    model: str | None
    adapter: str | None = None
    url: str | None = None
    port: int | None = None
    sampling: SamplingSettings = SamplingSettings()
    concurrency: int = DEFAULTS.concurrency
    timeout_s: float = DEFAULTS.request_timeout_s
    epochs: int = DEFAULTS.epochs
    goal: str | None = None
    note: str | None = None
    parent_run_id: int | None = None
    limit: int | None = None  # the suite was cut to its first `limit` prompts
    suite_prompts: int | None = None  # the prompts it had before the cut
    replicas: int = 1  # servers we start for the model, sharing the prompts
    # An adapter runs on its base model only (adapterbase): unless allowed, another model is
    # refused. `base_check` is the check a script already made; else it is made here.
    allow_other_base: bool = False
    base_check: BaseCheck | None = None

    def config(self) -> dict:
        return {
            "suite_path": str(self.suite.path),
            "prompts_planned": len(self.suite.prompts),
            "limit": self.limit,
            **({"suite_prompts": self.suite_prompts} if self.limit is not None else {}),
            "url": self.url,
            **({"replicas": self.replicas} if self.replicas > 1 else {}),
            "concurrency": self.concurrency,
            "request_timeout_s": self.timeout_s,
            "sampling": self.sampling.as_dict(),
            "epochs": self.epochs,
            "exec": self.suite.exec_tests,
            "execution": self.execution(),
        }

    def planned(self) -> int:
        """Results the run asks for: every prompt, every epoch."""
        return len(self.suite.prompts) * self.epochs

    def fingerprinted_sampling(self) -> dict:
        """The sampling settings as fingerprinted: repeats count only when there are some, so
        single-epoch runs keep their earlier fingerprints."""
        return self.sampling.as_dict() | ({"epochs": self.epochs} if self.epochs > 1 else {})

    def execution(self) -> dict | None:
        """How expect_tests ran (None: the suite has none), with the containment in force."""
        if all(prompt.expect_tests is None for prompt in self.suite.prompts):
            return None
        if not self.suite.exec_tests:
            return {"enabled": False}
        return {
            "enabled": True,
            "timeout_s": DEFAULTS.tests_timeout_s,
            "workers": tests_workers(),
            "containment": containment_summary(),
        }

    def scope(self) -> dict | None:
        """What changes the scores beyond model, suite file and sampling, when not the default:
        part of the fingerprint, so a cut or exec=false run is not taken for a rerun."""
        scope = {"limit": self.limit} if self.limit is not None else {}
        if not self.suite.exec_tests:
            scope["exec"] = False
        return scope or None


@dataclass(frozen=True)
class EvalOutcome:
    run_id: int
    scores: dict | None  # ledger.run_scores, when every prompt was answered or scored
    error: str | None  # why the run failed; its finished results are kept in the ledger
    kept: int  # results recorded


def record_eval(
    db: Database, plan: EvalPlan, on_start: Callable[[int], None] | None = None
) -> EvalOutcome:
    """Run one eval as a ledger run: `running` first, a row per prompt, then ok or failed.

    A failure (the server would not start or died) is returned in the outcome, with the run
    marked `failed`. Ctrl-C / SIGTERM mark it `interrupted` and propagate. `on_start` gets
    the run's id as soon as it is recorded.
    """
    started: list[Run] = []
    base = adapter_base_check(db, plan)
    if base is not None and (warning := base.warning(str(plan.adapter))):
        print(warning, file=sys.stderr)

    def run_it() -> None:
        with recording_run(
            db,
            "eval",
            plan.config() | (base.config() if base else {}),
            model=plan.model or plan.url,
            adapter=plan.adapter,
            suite=plan.suite.name,
            goal=plan.goal,
            note=plan.note,
            parent_run_id=plan.parent_run_id,
            **({"hardware": None} if plan.url else {}),  # a server we did not start: unknown
        ) as run:
            started.append(run)
            if on_start:
                on_start(run.id)
            what = plan.model or plan.url
            adapter = f" with {plan.adapter}" if plan.adapter else ""
            print(f"run {run.id}: evaluating {what}{adapter} on {plan.suite.name}", file=sys.stderr)
            print(f"settings: {eval_settings_text(plan.config())}", file=sys.stderr)
            parts = plan_fingerprint(plan, db)
            run.update(
                fingerprint=parts.pop("fingerprint"),
                fingerprint_parts=parts,
                dataset=dataset_of_adapter(db, plan.adapter)
                or dataset_of_fused_model(db, plan.model),
            )
            evaluate_into(run, plan)

    return settle(db, started, run_it)


def plan_fingerprint(plan: EvalPlan, db: Database) -> dict:
    return eval_fingerprint(
        plan.model or plan.url,
        plan.adapter,
        plan.suite.path,
        plan.fingerprinted_sampling(),
        db,
        scope=plan.scope(),
    )


def settle(db: Database, started: list[Run], run_it) -> EvalOutcome:
    """Call `run_it` (which records into the run it appends to `started`) and say how it
    ended: the outcome, with a failure's message; Ctrl-C propagates."""
    error = None
    try:
        run_it()
    except (ServerGone, UserError) as failure:
        error = str(failure)
    if not started:
        raise RuntimeError(f"the eval run was not recorded: {error}")
    run_id = started[0].id
    kept = db.table("eval_results").count_where("run_id = ?", [run_id])
    finished = json.loads(db.table("runs").get(run_id)["summary"] or "null") is not None
    return EvalOutcome(run_id, run_scores(db, run_id) if finished else None, error, kept)


def evaluate_into(run: Run, plan: EvalPlan, done: frozenset[tuple[str, int]] = frozenset()):
    """Start the servers (or reach plan.url), ask every (prompt, epoch) not in `done`, and
    store the summary over all the run's results. Raises ServerGone, UserError when every
    request failed, KeyboardInterrupt."""
    if len(done) < plan.planned():  # else a resumed run that only lacked its summary
        _ask_all(run, plan, done)
    rows = list(run.db.query("SELECT * FROM eval_results WHERE run_id = ?", [run.id]))
    run.update(summary=run_summary(rows, plan.epochs) | bfcl_summary(plan.suite, rows))
    if rows and all(row["error"] is not None for row in rows):
        # Scores of 0 from requests that never got an answer measure nothing.
        raise UserError(f"every request failed, e.g. {rows[0]['error']}")


def adapter_base_check(db: Database, plan: EvalPlan) -> BaseCheck | None:
    """The adapter's base against the model (None without an adapter, or for a url= server);
    raises UserError, before any run is recorded, when the model is another one."""
    if plan.adapter is None or plan.url is not None:
        return None
    if plan.base_check is not None:
        return plan.base_check
    base = base_of_adapter(plan.adapter, db.conn)
    return check_base(plan.model, plan.adapter, base, plan.allow_other_base)


def prompts_too_long(plan: EvalPlan) -> dict[str, tuple[int, int, int]]:
    """Prompt id -> (prompt tokens, max_tokens, context) for each prompt whose tokens (the
    model's tokenizer and chat template, tools included) plus max_tokens exceed the model's
    context. Only for a model we start and can see; {} for a --url server."""
    directory = None
    if plan.model and not plan.url:
        directory = Path(plan.model) if Path(plan.model).is_dir() else hub_snapshot(plan.model)
    context = context_length(directory) if directory else None
    if directory is None or context is None:
        return {}
    suite = plan.suite
    budgets = [plan.sampling.max_tokens or prompt.max_tokens for prompt in suite.prompts]
    requests = [
        (suite.request_messages(prompt), suite.request_tools(prompt), budget)
        for prompt, budget in zip(suite.prompts, budgets, strict=True)
    ]
    lengths = prompt_lengths(directory, requests, context)
    return {
        prompt.id: (tokens, budget, context)
        for prompt, budget, tokens in zip(suite.prompts, budgets, lengths, strict=True)
        if tokens is not None and tokens + budget > context
    }


def _ask_all(run: Run, plan: EvalPlan, done: frozenset[tuple[str, int]]) -> None:
    too_long = prompts_too_long(plan)
    if too_long:
        print(
            f"{len(too_long)} of {len(plan.suite.prompts)} prompts are {TOO_LONG}:"
            " not sent, scored 0",
            file=sys.stderr,
        )
    with ExitStack() as servers:
        endpoints = _endpoints(plan, run, servers)
        run.update(config={**_config(run), "too_long_prompts": len(too_long)})
        if len(endpoints) > 1:
            seen = check_same_model(endpoints)
            run.update(config={**_config(run), "endpoints": seen})
        try:
            run_suite(
                run,
                plan.suite,
                EndpointPool(endpoints),
                plan.sampling,
                plan.concurrency,
                plan.epochs,
                done,
                too_long,
            )
        except (ServerGone, KeyboardInterrupt):
            excerpts = [server.log_excerpt() for server in servers_of(endpoints)]
            if excerpts:
                run.update(output_excerpt="\n".join(excerpts))
            raise


def _endpoints(plan: EvalPlan, run: Run, servers: ExitStack) -> list[Endpoint]:
    """The endpoints of plan.url (comma-separated), or of plan.replicas servers we start
    (stopped with `servers`, whatever happens)."""
    from labbench.serving.server import SERVED_MODEL, start_server

    if plan.url:
        endpoints = []
        for url in plan.url.split(","):
            endpoint = Endpoint(url, plan.model, timeout_s=plan.timeout_s)
            endpoint.describe_death = lambda url=url: f"cannot reach {url}"
            endpoint.hint_404 = f"no chat completions there; --url takes {URL_FORMS}" + (
                ", and check --served-model" if plan.model else ""
            )
            endpoints.append(endpoint)
        return endpoints
    started = []
    for replica in range(plan.replicas):
        port = plan.port if replica == 0 else None
        started.append(
            servers.enter_context(start_server(str(plan.model), plan.adapter, port=port))
        )
    urls = [server.base_url for server in started]
    pids = [server.pid for server in started]
    config = {**_config(run), "url": ",".join(urls), "server_pid": pids[0]}
    run.update(config=config | ({"server_pids": pids} if len(pids) > 1 else {}))
    endpoints = []
    for server in started:
        endpoint = Endpoint(
            server.base_url, SERVED_MODEL, alive=server.alive, timeout_s=plan.timeout_s
        )
        endpoint.describe_death = lambda server=server: _server_death(server)
        endpoint.server = server
        endpoints.append(endpoint)
    return endpoints


def servers_of(endpoints: list[Endpoint]) -> list:
    return [endpoint.server for endpoint in endpoints if endpoint.server is not None]


def _config(run: Run) -> dict:
    return json.loads(run.db.table("runs").get(run.id)["config"])


def _server_death(server) -> str:
    if server.alive():
        return "the server stopped answering"
    detail = server.error_line() or describe_exit(server.process.returncode)
    return f"the server exited ({detail})"
