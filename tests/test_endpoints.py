"""Eval across several servers: least busy first, failover, and the same-model check."""

import json
import os
import signal
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler

import pytest
from helpers import small_suite_toml
from sqlite_utils import Database

from labbench.eval.evaluation import EvalPlan, record_eval
from labbench.eval.suite import load_suite
from labbench.record.ledger import open_ledger
from labbench.serving.chatclient import Endpoint, ServerGone, post_chat
from labbench.serving.endpoints import EndpointPool
from labbench.serving.replay import serving
from labbench.serving.server import start_server
from labbench.tiny.tinymodel import build_tiny_model

# --- pure logic ----------------------------------------------------------------------------


def test_the_pool_sends_to_the_least_busy_and_fails_over(capsys):
    pool = EndpointPool([Endpoint("http://a", None), Endpoint("http://b", None)])
    assert [pool.acquire(), pool.acquire(), pool.acquire()] == [0, 1, 0]
    pool.release(0)
    pool.release(0)
    assert pool.acquire() == 0  # a: 1 in flight, b: 1; the first wins a tie
    pool.release(0)
    pool.release(1)

    def send(endpoint):
        if endpoint.base_url == "http://a":
            raise ServerGone("a died")
        return {"answer": endpoint.base_url}

    assert pool.ask(send) == ({"answer": "http://b"}, "http://b")
    assert pool.gone == {0: "a died"} and pool.in_flight == [0, 0]
    warning = "warning: http://a dropped (a died); its prompts go to the others\n"
    assert capsys.readouterr().err == warning
    assert pool.drop(0, "a died again") is False  # said once, however many requests were on it
    assert pool.drop(1, "b died") is True
    with pytest.raises(ServerGone, match="every endpoint is gone: http://a: a died; http://b: b"):
        pool.acquire()


def test_servers_we_stop_at_the_end_are_not_reported_as_dropped(capsys):
    pool = EndpointPool([Endpoint("http://a", None), Endpoint("http://b", None)])
    pool.closed.set()  # the eval is over (done, failed or Ctrl-C) and stops its servers

    def send(endpoint):
        raise ServerGone("the server exited (killed by SIGTERM (terminated))")

    with pytest.raises(ServerGone):
        pool.ask(send)
    assert pool.gone == {} and capsys.readouterr().err == ""


class CutShort(BaseHTTPRequestHandler):
    """Promises a 523-byte body, sends none and hangs up: what a client sees when
    mlx_lm.server is killed mid-answer."""

    def do_POST(self) -> None:
        # Read the whole request first: unread bytes would make the hang-up a reset instead.
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "523")
        self.end_headers()

    def log_message(self, format, *args) -> None:  # keep the test output quiet
        pass


@pytest.mark.timeout(30)
def test_an_answer_cut_short_is_a_dropped_connection_not_a_crash():
    with serving(CutShort) as url:
        endpoint = Endpoint(url, None, retries=1)
        endpoint.answered = True  # mid-run: it answered before, so it is retried first
        with pytest.raises(ServerGone, match="IncompleteRead"):
            post_chat(endpoint, {"messages": []})


# --- against real servers ------------------------------------------------------------------

LONGER_SUITE = "\n".join(
    ['name = "sums"', "[defaults]", "max_tokens = 24"]
    + [
        f'[[prompts]]\nid = "sum{n}"\ncategory = "reasoning"\n'
        f'prompt = "What is {n} plus {n}?"\nexpect_answer = "{2 * n}"'
        for n in range(12)
    ]
)


@pytest.fixture(scope="module")
def servers(tiny_model, tiny_server, tmp_path_factory):
    """Two servers of the tiny model (one the session's) and one of another model (other
    weights, other path)."""
    other = build_tiny_model(tmp_path_factory.mktemp("other") / "tiny-other", seed=1)
    with ExitStack() as stack:
        yield [tiny_server] + [
            stack.enter_context(start_server(str(model))) for model in (tiny_model, other)
        ]


@pytest.fixture(scope="module")
def suites(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("suites")
    (root / "small.toml").write_text(small_suite_toml(max_tokens=16))
    (root / "sums.toml").write_text(LONGER_SUITE)
    return {name: load_suite(str(root / f"{name}.toml")) for name in ("small", "sums")}


def results(db, run_id: int) -> dict:
    return {
        row["prompt_id"]: row
        for row in db.query("SELECT * FROM eval_results WHERE run_id = ?", [run_id])
    }


def evaluate(db, suite, model: str | None = None, **plan):
    outcome = record_eval(db, EvalPlan(suite=suite, model=model, **plan))
    assert outcome.error is None, outcome.error
    return results(db, outcome.run_id)


@pytest.mark.slow("three tiny-model servers")
@pytest.mark.timeout(300)
def test_two_endpoints_score_as_one(servers, suites, tmp_path):
    db = open_ledger(tmp_path / "ledger.db")
    one = evaluate(db, suites["small"], url=servers[0].base_url)
    both = evaluate(db, suites["small"], url=f"{servers[0].base_url},{servers[1].base_url}")
    assert {p: (r["response"], r["score"]) for p, r in one.items()} == {
        p: (r["response"], r["score"]) for p, r in both.items()
    }
    # Both prompts are in flight at once: each server answered one.
    assert sorted(r["endpoint"] for r in both.values()) == sorted(
        [servers[0].base_url, servers[1].base_url]
    )
    assert {r["endpoint"] for r in one.values()} == {servers[0].base_url}
    [config] = [
        json.loads(row["config"]) for row in db.query("SELECT config FROM runs LIMIT 1 OFFSET 1")
    ]
    assert set(config["endpoints"]) == {servers[0].base_url, servers[1].base_url}


@pytest.mark.slow("three tiny-model servers")
@pytest.mark.timeout(300)
def test_endpoints_serving_different_models_are_refused(servers, suites, tmp_path):
    db = open_ledger(tmp_path / "ledger.db")
    urls = f"{servers[0].base_url},{servers[2].base_url}"
    outcome = record_eval(db, EvalPlan(suite=suites["small"], model=None, url=urls))
    assert outcome.error is not None and outcome.kept == 0
    assert outcome.error.startswith("the endpoints do not serve the same model")
    assert servers[0].base_url in outcome.error and servers[2].base_url in outcome.error
    assert db.table("runs").get(outcome.run_id)["status"] == "failed"


@pytest.mark.slow("three tiny-model servers")
@pytest.mark.timeout(300)
def test_replicas_survive_one_killed_mid_run(tiny_model, servers, suites, tmp_path, background):
    db = open_ledger(tmp_path / "ledger.db")
    single = evaluate(db, suites["sums"], url=servers[0].base_url, concurrency=2)
    killed: list[int] = []

    def kill_second_replica() -> None:
        db = Database(tmp_path / "ledger.db")  # its own connection, in this thread
        while not background.stop.wait(0.05):
            rows = list(db.query("SELECT config FROM runs WHERE id = 2"))
            config = json.loads(rows[0]["config"]) if rows else {}
            answered = db.table("eval_results").count_where("run_id = 2")
            if config.get("server_pids") and answered >= 1:
                os.kill(config["server_pids"][1], signal.SIGKILL)
                killed.append(answered)
                return

    background.start(kill_second_replica, "kill_second_replica")
    replicas = evaluate(db, suites["sums"], model=str(tiny_model), replicas=2, concurrency=2)
    assert killed and killed[0] < len(suites["sums"].prompts)  # killed mid-run
    assert {p: (r["response"], r["score"]) for p, r in single.items()} == {
        p: (r["response"], r["score"]) for p, r in replicas.items()
    }
    assert all(r["error"] is None for r in replicas.values())
    config = json.loads(db.table("runs").get(2)["config"])
    assert config["replicas"] == 2 and len(config["server_pids"]) == 2
    first, second = config["url"].split(",")
    answered_by = [r["endpoint"] for r in replicas.values()]
    assert answered_by.count(first) > answered_by.count(second)  # the survivor took the rest
