"""Eval running modes against real servers: --url, concurrency, request failures."""

import json
import time

import pytest
from helpers import NO_WAIT_S, run_script
from sqlite_utils import Database

from labbench.eval.suite import load_suite


def responses(ledger, run_id: int) -> dict[str, tuple]:
    rows = Database(ledger).query(
        "SELECT prompt_id, response, tool_calls, score FROM eval_results WHERE run_id = ?",
        [run_id],
    )
    return {r["prompt_id"]: (r["response"], r["tool_calls"], r["score"]) for r in rows}


@pytest.mark.slow("a tiny-model mlx_lm server")
@pytest.mark.timeout(600)
def test_url_mode_evaluates_a_server_we_did_not_start(tiny_server, isolated_ledger):
    server = tiny_server
    result = run_script("eval", f"url={server.base_url}", "max_tokens=32")
    assert server.alive(), "eval must never stop a server it did not start"
    assert result.returncode == 0, result.stderr
    [run] = list(Database(isolated_ledger)["runs"].rows)
    assert run["status"] == "ok" and run["model"] == server.base_url
    config = json.loads(run["config"])
    assert config["url"] == server.base_url and "server_pid" not in config
    assert len(responses(isolated_ledger, run["id"])) == len(load_suite("baseline").prompts)


@pytest.mark.timeout(300)
def test_url_mode_refuses_model_flags():
    result = run_script("eval", "url=http://127.0.0.1:9", "model=models/tiny")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: --url")


@pytest.mark.timeout(300)
def test_unreachable_url_fails_the_run_cleanly_without_waiting(isolated_ledger):
    started = time.monotonic()
    result = run_script("eval", "url=http://127.0.0.1:9/v1")
    assert time.monotonic() - started < NO_WAIT_S
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: run 1 failed: cannot reach http://127.0.0.1:9 (")
    [run] = list(Database(isolated_ledger)["runs"].rows)
    assert run["status"] == "failed"


@pytest.mark.slow("eval scripts, each with its tiny-model server")
@pytest.mark.timeout(900)
def test_concurrent_results_equal_serial_at_temperature_zero(tiny_model, isolated_ledger):
    assert run_script("eval", "concurrency=1", "max_tokens=48").returncode == 0
    assert run_script("eval", "concurrency=8", "max_tokens=48").returncode == 0
    serial, concurrent = responses(isolated_ledger, 1), responses(isolated_ledger, 2)
    assert serial.keys() == concurrent.keys()
    assert serial == concurrent


def test_every_request_carries_stop_sequences_and_default_model():
    from labbench.eval.prompting import SamplingSettings, build_request
    from labbench.serving.chatclient import Endpoint

    suite = load_suite("baseline")
    payload = build_request(
        suite, suite.prompts[0], Endpoint("http://x", "default_model"), SamplingSettings()
    )
    assert payload["model"] == "default_model"
    assert payload["stop"] == ["<|im_end|>", "<|endoftext|>"]
    assert payload["temperature"] == 0.0
