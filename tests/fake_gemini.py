"""A local fake of the Gemini API's ``generateContent`` endpoint, for tests.

It listens on a free ``127.0.0.1`` port, answers ``POST /v1beta/models/{model}:generateContent``
with the real response JSON shape (``candidates[].content.parts[].text``, ``finishReason``,
``usageMetadata``, ``modelVersion``) or with the real error shape
(``{"error": {"code", "message", "status"}}``), and records every request it receives.

Script it with a queue of steps, consumed one per request; when the queue is empty it repeats
``default``::

    with FakeGemini() as fake:
        fake.script(Step(status=429), Step(text="hello"))
        client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=fake.url))
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PATH = re.compile(r"^/(?P<version>v1(?:beta|alpha)?)/models/(?P<model>[^/:]+):generateContent$")
_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class Step:
    """What the fake does for one request.

    Attributes:
        status: HTTP status; 200 answers ``text``, anything else the Gemini error JSON.
        text: the model's answer (status 200).
        delay_s: seconds to wait before answering (interrupted when the server stops).
        finish_reason: ``STOP``, ``SAFETY``, ``MAX_TOKENS``...; ``SAFETY`` sends no text.
    """

    status: int = 200
    text: str = "This is a fake Gemini answer."
    delay_s: float = 0.0
    finish_reason: str = "STOP"


@dataclass
class Received:
    """One request the fake received: path, model, headers (lower-case names), JSON body."""

    path: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


def response_json(step: Step, model: str) -> dict[str, Any]:
    """The body the real API returns for ``step`` (success or error shape)."""
    if step.status != 200:
        return {
            "error": {
                "code": step.status,
                "message": f"fake error {step.status}",
                "status": _STATUS.get(step.status, "UNKNOWN"),
            }
        }
    candidate: dict[str, Any] = {"finishReason": step.finish_reason, "index": 0}
    if step.finish_reason == "SAFETY":
        candidate["safetyRatings"] = [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
        ]
    else:
        candidate["content"] = {"parts": [{"text": step.text}], "role": "model"}
    return {
        "candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 42, "candidatesTokenCount": 7, "totalTokenCount": 49},
        "modelVersion": model,
        "responseId": "fake-response-id",
    }


class FakeGemini:
    """The fake server; a context manager that starts and stops it.

    Attributes:
        url: base URL to give ``types.HttpOptions(base_url=...)``.
        requests: every request received, in order.
        default: the step used once the script is exhausted.
    """

    def __init__(self, default: Step | None = None) -> None:
        self.default = default or Step()
        self.requests: list[Received] = []
        self._steps: list[Step] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *steps: Step) -> None:
        """Queue steps for the next requests (one each), after those already queued."""
        with self._lock:
            self._steps.extend(steps)

    def _next(self) -> Step:
        with self._lock:
            return self._steps.pop(0) if self._steps else self.default

    def start(self) -> FakeGemini:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                match = _PATH.match(self.path.split("?", 1)[0])
                if not match:
                    self._send(404, response_json(Step(status=404), ""))
                    return
                model = match["model"]
                body = json.loads(raw or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake._lock:
                    fake.requests.append(Received(self.path, model, headers, body))
                step = fake._next()
                if step.delay_s and fake._stop.wait(step.delay_s):
                    return
                self._send(step.status, response_json(step, model))

        return Handler
