"""The HTTP side of an eval: an OpenAI-compatible chat endpoint, its URL in the forms users
give it, and one POST with the retries and errors a user can act on.
"""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from labbench.core.errors import UserError
from labbench.core.settings import EvalSettings

DEFAULTS = EvalSettings()
# Before the first answer a refused connection is not retried: nothing listens. After it,
# resets are retried (settings.EvalSettings.retries): mlx_lm.server listens with a backlog of 5,
# so bursts of new connections get reset; a short first pause costs little, and doubling it gives
# a dead server ~3 s in all.
RETRY_PAUSE_S = 0.05
CHAT_PATH = "/v1/chat/completions"  # appended to a base URL
URL_FORMS = "http://HOST:PORT, http://HOST:PORT/v1 or http://HOST:PORT/v1/chat/completions"


class ServerGone(UserError):
    """The server stopped answering: the run cannot go on. Said in one line, as a UserError
    is (in the ledger too), since the message already names the server and what happened."""


def normalize_url(url: str) -> str:
    """The base URL (`http://host:port`, plus any path prefix) of `--url` given in any of its
    three forms: the server root, the OpenAI base URL ending in /v1 (what Ollama, vLLM,
    LM Studio and llama.cpp document) or the full chat completions URL. Without a scheme,
    http:// is assumed, as curl does: local servers speak plain HTTP. Raises UserError."""
    given = url.strip()
    if "://" not in given:
        given = "http://" + given
    parts = urlsplit(given)
    if parts.scheme.lower() not in ("http", "https"):
        raise UserError(f"--url {url}: the scheme must be http or https, e.g. {URL_FORMS}")
    try:
        parts.port  # noqa: B018 -- parsing the port is what checks it
    except ValueError:
        raise UserError(f"--url {url}: the port is not a number from 0 to 65535") from None
    if any(char.isspace() for char in given):
        raise UserError(f"--url {url}: a URL has no spaces in it; give {URL_FORMS}")
    if not parts.hostname:
        raise UserError(f"--url {url}: no host in it; give {URL_FORMS}")
    if parts.query or parts.fragment:
        raise UserError(f"--url {url}: no query or fragment, please; give {URL_FORMS}")
    path = re.sub("/+", "/", parts.path).rstrip("/")
    for suffix in (CHAT_PATH, "/v1"):
        if path.endswith(suffix):
            path = path.removesuffix(suffix)
            break
    else:
        if path:
            raise UserError(f"--url {url}: the path must be empty, /v1 or {CHAT_PATH}")
    return f"{parts.scheme.lower()}://{parts.netloc}{path}"


@dataclass
class Endpoint:
    """Where requests go. `model` is None to leave the field out (mlx_lm: default model)."""

    base_url: str
    model: str | None
    alive: Callable[[], bool] = lambda: True
    timeout_s: float = DEFAULTS.request_timeout_s
    retries: int = DEFAULTS.retries
    describe_death: Callable[[], str] = lambda: "the server stopped answering"
    session: requests.Session = field(default_factory=requests.Session)
    # Said after a 404 to the first request: a user's URL that points at no chat endpoint.
    hint_404: str | None = None
    answered: bool = False  # set by the first answer of any kind
    server: Any = None  # the ServerProcess behind it, when we started it


def post_chat(endpoint: Endpoint, payload: dict) -> dict:
    """POST a chat completion; retry connection errors only. Raises ServerGone or RuntimeError."""
    url = endpoint.base_url.rstrip("/") + CHAT_PATH
    for attempt in range(endpoint.retries + 1):
        if not endpoint.alive():
            raise ServerGone(endpoint.describe_death())
        try:
            response = endpoint.session.post(url, json=payload, timeout=endpoint.timeout_s)
        # A server killed mid-answer cuts the body short (ChunkedEncodingError): that is a
        # dropped connection too, not a per-prompt error.
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
            never_connected = not endpoint.answered and _refused(error)
            if never_connected or attempt == endpoint.retries or not endpoint.alive():
                reason = root_cause(error)
                raise ServerGone(f"{endpoint.describe_death()} ({reason})") from error
            time.sleep(RETRY_PAUSE_S * 2**attempt)
            continue
        except requests.Timeout as error:
            if not endpoint.answered:  # waiting again on every prompt would only repeat this
                raise ServerGone(
                    f"{url} accepted the request but gave no answer within "
                    f"{endpoint.timeout_s:g} s (a slow model? pass timeout=SECONDS)"
                ) from error
            raise RuntimeError(f"no answer within {endpoint.timeout_s:g} s") from error
        except requests.RequestException as error:
            raise RuntimeError(short_error(error)) from error
        if response.status_code == 404 and endpoint.hint_404 and not endpoint.answered:
            body = response.text.strip().replace("\n", " ")[:150]
            raise ServerGone(f"POST {url} answered 404 ({body}): {endpoint.hint_404}")
        endpoint.answered = True
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text.strip()[:300]}")
        try:
            return response.json()
        except ValueError as error:
            raise RuntimeError(f"answer is not JSON: {response.text[:200]!r}") from error
    raise AssertionError("unreachable")


def _refused(error: requests.RequestException) -> bool:
    """True when no connection was made at all (refused, unknown host), not a reset one."""
    from urllib3.exceptions import NewConnectionError

    return isinstance(
        getattr(error.args[0] if error.args else None, "reason", None), NewConnectionError
    )


def root_cause(error: BaseException) -> str:
    """The OS's reason, e.g. Connection refused, not three layers of requests wrapping."""
    root = error
    while (inner := root.__cause__ or root.__context__) is not None:
        root = inner
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    return short_error(error)


def short_error(error: BaseException) -> str:
    return str(error).splitlines()[0][:200]
