"""A small OpenAI-compatible chat server that replays known answers, over real HTTP on a free
port, in a thread: the self-check feeds HumanEval's canonical solutions through the whole eval
path with it, and `just bench-exec` uses it as a server whose answers hold code.

The first path segment before /v1 is handed to `answer` as the variant, so one server can give
different answers to `url=http://127.0.0.1:PORT/VARIANT/v1`. With `tokens_per_s` it emulates a
server that generates that many tokens per second in all (requests share it, as a batching
server's throughput is shared), counting a token as 4 characters of the answer.
With `by_request`, `answer` is given the whole request instead of its last user message (BFCL
asks one question with different tools), and may return the message itself, a dict with
`content` and/or `tool_calls` (and `finish_reason`), instead of its content.
"""

import json
import sys
import threading
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[str, str], str]  # (variant, last user message) -> the answer's content
RequestAnswer = Callable[[str, dict], "str | dict"]  # (variant, request) -> content or message


CHARS_PER_TOKEN = 4


@contextmanager
def replay_server(
    answer: Answer | RequestAnswer, tokens_per_s: float | None = None, by_request: bool = False
) -> Generator[str, None, None]:
    """Serve until the block ends; yields the base URL, http://127.0.0.1:PORT."""
    busy_until = [time.monotonic()]
    lock = threading.Lock()

    def generate(content: str) -> None:
        """Wait for this answer's share of the emulated server's time."""
        if tokens_per_s is None:
            return
        with lock:
            start = max(time.monotonic(), busy_until[0])
            busy_until[0] = start + len(content) / CHARS_PER_TOKEN / tokens_per_s
            finish = busy_until[0]
        time.sleep(max(0.0, finish - time.monotonic()))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            variant, _, rest = self.path.strip("/").partition("/")
            if rest != "v1/chat/completions":
                variant, rest = "", self.path.strip("/")
            if rest != "v1/chat/completions":
                self.send_error(404)
                return
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            question = [m for m in request["messages"] if m["role"] == "user"][-1]["content"]
            given = answer(variant, request if by_request else question)
            message = dict(given) if isinstance(given, dict) else {"content": given}
            finish_reason = message.pop("finish_reason", "stop")
            answered = given if isinstance(given, str) else json.dumps(message)
            generate(answered)
            body = json.dumps(
                {
                    "choices": [
                        {
                            "message": {"role": "assistant", "content": None, **message},
                            "finish_reason": finish_reason,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": len(question) // CHARS_PER_TOKEN,
                        "completion_tokens": len(answered) // CHARS_PER_TOKEN,
                    },
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:  # quiet
            pass

    with serving(Handler) as base_url:
        yield base_url


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Generator[str, None, None]:
    """An HTTP server with this handler on a free loopback port, in a thread, until the block
    ends; yields its base URL, http://127.0.0.1:PORT."""
    server = _QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-answer (a stopped eval) is no error of the server's."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
