"""Local stand-ins for notification receivers, on free 127.0.0.1 ports.

- :class:`HttpSink`: a stdlib ``ThreadingHTTPServer`` that records every request and answers with
  scripted statuses (e.g. 500 first, then 200), for Slack, PagerDuty and generic webhooks.
- :class:`SmtpSink`: an ``aiosmtpd`` controller that records every message (optionally with
  AUTH LOGIN/PLAIN accepted over plain text, as a local test needs no TLS).
- :func:`dead_url`: an address where nothing listens (connection refused).
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_url(path: str = "/") -> str:
    """An http URL on 127.0.0.1 where nothing listens."""
    return f"http://127.0.0.1:{free_port()}{path}"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpSink:
    """Record requests; answer with ``script`` statuses in order, then ``status``.

    Use as a context manager::

        with HttpSink(script=[500], status=202, reply=b'{"status":"success"}') as sink:
            ...; assert sink.requests[1].json()["event_action"] == "trigger"
    """

    def __init__(
        self,
        *,
        status: int = 200,
        reply: bytes = b"ok",
        script: list[int] | None = None,
    ) -> None:
        self.status = status
        self.reply = reply
        self.script: deque[int] = deque(script or [])
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with sink._lock:
                    sink.requests.append(
                        Request(self.command, self.path, dict(self.headers.items()), body)
                    )
                    status = sink.script.popleft() if sink.script else sink.status
                self.send_response(status)
                self.send_header("Content-Length", str(len(sink.reply)))
                self.end_headers()
                self.wfile.write(sink.reply)

            do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )  # a short poll interval: shutdown() waits for one poll

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HttpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def body(self) -> str:
        return self.message.get_content().replace("\r\n", "\n")  # CRLF on the wire


@dataclass
class SmtpSink:
    """Record messages sent to ``127.0.0.1:<port>``; with ``accept_login``, take any credentials."""

    accept_login: bool = False
    messages: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                message = message_from_bytes(envelope.original_content, policy=policy.default)
                sink.messages.append(
                    Mail(envelope.mail_from, list(envelope.rcpt_tos), message)  # type: ignore[arg-type]
                )
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            if isinstance(auth_data, LoginPassword):
                sink.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=True)

        kwargs: dict[str, Any] = {}
        if self.accept_login:
            kwargs = {"authenticator": authenticator, "auth_require_tls": False}
        self.port = free_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
