"""`--url` in the forms users copy from their server's docs, and what goes wrong with it."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler

import pytest
from helpers import HANG_S, run_just
from sqlite_utils import Database

from labbench.core.errors import UserError
from labbench.eval.suite import load_suite
from labbench.serving.chatclient import normalize_url
from labbench.serving.replay import replay_server, serving


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/v1/chat/completions", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/v1/chat/completions/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080//v1//", "http://127.0.0.1:8080"),
        ("  http://localhost:11434/v1  ", "http://localhost:11434"),
        ("HTTP://localhost:1234/v1", "http://localhost:1234"),
        ("https://example.com/v1", "https://example.com"),
        ("https://example.com/api/v1", "https://example.com/api"),
        ("https://example.com/api/v1/chat/completions", "https://example.com/api"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("localhost:11434/v1", "http://localhost:11434"),
        ("http://[::1]:8080/v1", "http://[::1]:8080"),
    ],
)
def test_every_url_form_gives_the_base_url(given, base):
    assert normalize_url(given) == base


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("http://127.0.0.1:8080/api", "the path must be empty, /v1 or /v1/chat/completions"),
        ("http://127.0.0.1:8080/v1/completions", "the path must be empty, /v1 or"),
        ("http://127.0.0.1:8080/chat/completions", "the path must be empty, /v1 or"),
        ("ftp://127.0.0.1:8080", "the scheme must be http or https"),
        ("http://127.0.0.1:port/v1", "the port is not a number"),
        ("http://127.0.0.1:99999", "the port is not a number"),
        ("http:///v1", "no host in it"),
        ("", "no host in it"),
        ("http://127.0.0.1:8080/v1?key=x", "no query or fragment"),
        ("not a url", "a URL has no spaces in it"),
    ],
)
def test_a_url_of_no_known_form_is_a_one_line_error_naming_the_flag(given, problem):
    with pytest.raises(UserError) as raised:
        normalize_url(given)
    message = str(raised.value)
    assert message.startswith(f"--url {given}: {problem}")
    assert "\n" not in message


@pytest.fixture
def server(tiny_server):
    return tiny_server


@pytest.mark.slow("a tiny-model mlx_lm server")
@pytest.mark.timeout(300)
@pytest.mark.parametrize("form", ["{base}", "{base}/", "{base}/v1", "{base}/v1/chat/completions"])
def test_just_eval_works_with_every_url_form(form, server, isolated_ledger):
    result = run_just("eval", f"url={form.format(base=server.base_url)}", "max_tokens=4")
    assert result.returncode == 0, result.stderr
    [run] = list(Database(isolated_ledger)["runs"].rows)
    assert run["status"] == "ok" and run["model"] == server.base_url
    assert json.loads(run["config"])["url"] == server.base_url
    results = Database(isolated_ledger)["eval_results"]
    assert results.count == len(load_suite("baseline").prompts)
    assert results.count_where("error IS NOT NULL") == 0


@pytest.mark.slow("a tiny-model mlx_lm server")
@pytest.mark.timeout(300)
def test_just_eval_assumes_http_without_a_scheme(server, isolated_ledger):
    without_scheme = server.base_url.removeprefix("http://") + "/v1"
    result = run_just("eval", f"url={without_scheme}", "max_tokens=4")
    assert result.returncode == 0, result.stderr
    [run] = list(Database(isolated_ledger)["runs"].rows)
    assert run["status"] == "ok" and run["model"] == server.base_url


class NotFoundEverywhere(BaseHTTPRequestHandler):
    def _not_found(self) -> None:
        self.send_error(404, "Not Found")

    do_GET = do_POST = _not_found

    def log_message(self, format, *args) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def not_found_url():
    """A real HTTP server on a free loopback port that answers 404 to everything."""
    with serving(NotFoundEverywhere) as base_url:
        yield base_url


@pytest.mark.timeout(300)
def test_a_404_on_the_first_request_names_the_url_and_the_fix(not_found_url, isolated_ledger):
    result = run_just("eval", f"url={not_found_url}/v1")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: run 1 failed: POST {not_found_url}/v1/chat/completions answered 404"
    )
    assert "--url takes http://HOST:PORT, http://HOST:PORT/v1 or" in last
    [run] = list(Database(isolated_ledger)["runs"].rows)
    assert run["status"] == "failed" and run["model"] == not_found_url


@pytest.fixture
def never_answers():
    """(URL, requests received) of a server that accepts each request and keeps the client
    waiting until the test ends; its handler threads end with the test too."""
    received: list[str] = []
    released = threading.Event()

    class NeverAnswers(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.path)
            released.wait(HANG_S)

        def log_message(self, format, *args) -> None:
            pass

    with serving(NeverAnswers) as url:
        try:
            yield url, received
        finally:
            released.set()


@pytest.mark.timeout(300)
def test_a_server_that_never_answers_fails_the_run_after_one_timeout(
    never_answers, isolated_ledger
):
    url, received = never_answers
    # One request at a time: a timeout for every prompt would show as one request per prompt.
    result = run_just("eval", f"url={url}", "timeout=2", "concurrency=1")
    assert received == ["/v1/chat/completions"]  # one timeout, not one per prompt
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: run 1 failed: {url}/v1/chat/completions accepted the request but gave no "
        "answer within 2 s (a slow model? pass timeout=SECONDS); kept 0 of 31 results;"
        " `just eval resume=1` asks the rest"
    )
    [run] = list(Database(isolated_ledger)["runs"].rows)
    assert run["status"] == "failed"


@pytest.mark.timeout(300)
def test_a_server_listed_twice_fails_before_any_run(isolated_ledger):
    result = run_just("eval", "url=http://127.0.0.1:9,127.0.0.1:9/v1")
    assert (result.returncode, result.stderr) == (
        1,
        "error: --url lists http://127.0.0.1:9 twice: each server once, please\n",
    )
    assert not isolated_ledger.exists()


@pytest.mark.timeout(300)
def test_an_unreachable_server_among_several_is_named_with_the_reason(isolated_ledger):
    result = run_just("eval", "url=http://127.0.0.1:9,http://127.0.0.1:7", "limit=40")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: run 1 failed: http://127.0.0.1:9/v1/models: cannot list its models "
        "(Connection refused); kept 0 of 31 results; `just eval resume=1` asks the rest"
    )
    [run] = list(Database(isolated_ledger)["runs"].rows)
    assert run["error"].startswith("http://127.0.0.1:9/v1/models: cannot list")  # no type name
    assert json.loads(run["config"])["limit"] is None  # 40 of 31 prompts is the whole suite


@pytest.mark.timeout(300)
def test_a_url_of_no_known_form_fails_before_any_run(isolated_ledger):
    with socket.socket() as listener:  # where the eval would connect, had it tried
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
        result = run_just("eval", f"url={url}")
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection is waiting: the eval never tried the server
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: --url {url}: the path must be empty, /v1 or /v1/chat/completions"
    )
    assert not isolated_ledger.exists()


@pytest.mark.timeout(60)
def test_one_url_server_is_one_base_model_whether_or_not_default_model_is_named(
    isolated_ledger,
):
    with replay_server(lambda variant, question: "42") as url:
        for served in ([], ["served_model=default_model"]):
            result = run_just("eval", f"url={url}", "limit=2", *served, timeout=60)
            assert result.returncode == 0, result.stderr
    rows = Database(isolated_ledger).query(
        "SELECT run_id, model, base_model, baseline_run_id FROM cumulative_results ORDER BY 1"
    )
    assert list(rows) == [
        {"run_id": 1, "model": url, "base_model": url, "baseline_run_id": None},
        {"run_id": 2, "model": url, "base_model": url, "baseline_run_id": 1},
    ]
