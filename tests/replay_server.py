"""A small OpenAI-compatible chat server for tests: it answers each request with a text chosen
from the request (see `answer`), over real HTTP on a free port, in a thread.

The first path segment before /v1 is handed to `answer` as the variant, so one server can give
different answers to `url=http://127.0.0.1:PORT/VARIANT/v1`.
"""

import json
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[str, str], str]  # (variant, last user message) -> the answer's content


@contextmanager
def replay_server(answer: Answer) -> Generator[str, None, None]:
    """Serve until the block ends; yields the base URL, http://127.0.0.1:PORT."""

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
            content = answer(variant, question)
            body = json.dumps(
                {
                    "choices": [
                        {
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": len(question), "completion_tokens": len(content)},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
