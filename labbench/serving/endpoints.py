"""Several servers of one model as one: least-busy dispatch, failover, and the same-model check.

`just eval url=A,B` or `replicas=N`: each request goes to the live endpoint with the fewest
requests in flight; an endpoint that dies (chatclient.ServerGone) is dropped and its prompt is
asked again elsewhere; the run fails only when none is left. Before any scoring every endpoint
must serve the same model: what each lists at /v1/models and a fixed probe completion at
temperature 0 must agree.
"""

import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import requests

from labbench.core.errors import UserError
from labbench.serving.chatclient import CHAT_PATH, ServerGone, root_cause

PROBE = {
    "messages": [{"role": "user", "content": "Count from 1 to 5, separated by spaces."}],
    "max_tokens": 12,
    "temperature": 0.0,
}
PROBE_TIMEOUT_S = 60.0


class EndpointPool:
    """Endpoints (chatclient.Endpoint) shared by the request threads."""

    def __init__(self, endpoints: Sequence[Any]):
        self.endpoints = list(endpoints)
        self.in_flight = [0] * len(self.endpoints)
        self.gone: dict[int, str] = {}  # index: why it was dropped
        self.lock = threading.Lock()
        # Set when the eval stops (done, failed or Ctrl-C): the servers going away then are
        # being stopped by us, not dying, and their requests in flight say nothing.
        self.closed = threading.Event()

    def acquire(self) -> int:
        """The index of the least busy live endpoint, counted as busy until release().
        Raises chatclient.ServerGone when every endpoint is gone."""
        with self.lock:
            live = [i for i in range(len(self.endpoints)) if i not in self.gone]
            if not live:
                raise ServerGone(self.why_none_left())
            chosen = min(live, key=lambda i: (self.in_flight[i], i))
            self.in_flight[chosen] += 1
            return chosen

    def release(self, index: int) -> None:
        with self.lock:
            self.in_flight[index] -= 1

    def drop(self, index: int, why: str) -> bool:
        """Stop sending to this endpoint; True the first time, when it was still in use."""
        with self.lock:
            if index in self.gone:
                return False
            self.gone[index] = why
            return True

    def why_none_left(self) -> str:
        if len(self.endpoints) == 1:
            return self.gone[0]
        return "every endpoint is gone: " + "; ".join(
            f"{self.endpoints[i].base_url}: {why}" for i, why in sorted(self.gone.items())
        )

    def ask(self, send: Callable[[Any], dict]) -> tuple[dict, str]:
        """`send(endpoint)` on the least busy endpoint, again on another when it dies;
        returns the row and the endpoint's URL."""
        while True:
            index = self.acquire()
            endpoint = self.endpoints[index]
            try:
                return send(endpoint), endpoint.base_url
            except ServerGone as gone:
                if self.closed.is_set():
                    raise
                newly = self.drop(index, str(gone))
                if newly and len(self.endpoints) > 1 and len(self.gone) < len(self.endpoints):
                    print(
                        f"warning: {endpoint.base_url} dropped ({gone}); "
                        "its prompts go to the others",
                        file=sys.stderr,
                    )
            finally:
                self.release(index)


def served_models(endpoint: Any) -> list[str]:
    """The model ids an endpoint lists at /v1/models (sorted); UserError when it cannot say."""
    url = endpoint.base_url.rstrip("/") + "/v1/models"
    try:
        response = endpoint.session.get(url, timeout=PROBE_TIMEOUT_S)
        response.raise_for_status()
        return sorted(str(model.get("id")) for model in response.json().get("data", []))
    except (requests.RequestException, ValueError, AttributeError) as error:
        raise UserError(f"{url}: cannot list its models ({root_cause(error)})") from None


def probe_answer(endpoint: Any) -> str:
    url = endpoint.base_url.rstrip("/") + CHAT_PATH
    payload = dict(PROBE) | ({"model": endpoint.model} if endpoint.model else {})
    try:
        response = endpoint.session.post(url, json=payload, timeout=PROBE_TIMEOUT_S)
        response.raise_for_status()
        return str(response.json()["choices"][0]["message"].get("content"))
    except (requests.RequestException, ValueError, KeyError, IndexError) as error:
        raise UserError(f"{url}: the probe completion failed ({root_cause(error)})") from None


def check_same_model(endpoints: Sequence[Any]) -> dict[str, dict]:
    """Every endpoint must list the same models and answer the probe alike at temperature 0.
    Returns what each reported (recorded with the run). Raises UserError naming them."""
    seen = {
        endpoint.base_url: {"models": served_models(endpoint), "probe": probe_answer(endpoint)}
        for endpoint in endpoints
    }
    for what in ("models", "probe"):
        answers: dict[str, list[str]] = {}
        for url, reported in seen.items():
            answers.setdefault(repr(reported[what]), []).append(url)
        if len(answers) > 1:
            groups = "; ".join(f"{', '.join(urls)}: {answer}" for answer, urls in answers.items())
            label = "list different models" if what == "models" else "answer the probe differently"
            raise UserError(f"the endpoints do not serve the same model: they {label} ({groups})")
    return seen
