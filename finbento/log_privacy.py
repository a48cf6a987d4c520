"""Keep secrets and raw request content out of logs: URL passwords, keys, validation inputs.

:class:`PrivacyFilter`, attached to every logging handler by :func:`install` (in each BentoML
worker when ``services`` is imported, and in the scheduler daemon), rewrites a record before it
is written:

- a client's bad request that BentoML logs with its traceback (a pydantic ``ValidationError``,
  400, or a 4xx ``BentoMLException`` such as the batch-size 422) becomes one INFO line naming the
  fields and the rules broken, never the values sent (pydantic's ``input_value=...``);
- any other message and traceback keeps its text but loses URL passwords
  (``postgresql://user:***@host``, :func:`mask_url`), pydantic input values, and any secret
  configured in settings (admin token, API keys, Gemini key, notifier credentials), each
  replaced by ``***``.

The client still sees its own input in the 4xx answer; only the logs are cleaned.
:func:`pseudonym` gives our own log lines a stable reference to a user without the raw id.
"""

from __future__ import annotations

import hashlib
import logging
import re
import traceback
from collections.abc import Iterable
from typing import Any

#: ``scheme://user:password@`` in a URL (the password is what gets masked).
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):(?P<pw>[^\s@/]+)@")
#: pydantic's ``[type=..., input_value=<repr of the input>, input_type=...]`` (one line).
_INPUT_VALUE = re.compile(r"input_value=.*, input_type=(?P<type>\w+)\]")
#: A location part that is one of our field names (others may be a client's key: not logged).
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***`` (other text unchanged).

    ``postgresql://mlflow:s3cret@db:5432/mlflow`` -> ``postgresql://mlflow:***@db:5432/mlflow``.
    """
    return _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", url)


def pseudonym(value: str) -> str:
    """A stable 12-hex-digit reference to an identifier (SHA-256 prefix), for log lines."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without URL passwords, pydantic input values and the given secrets."""
    if "://" in text:  # cheap tests first: most lines (access lines) need no regex
        text = mask_url(text)
    if "input_value=" in text:
        text = _INPUT_VALUE.sub(rf"input_value={MASK}, input_type=\g<type>]", text)
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text


def _location(loc: tuple, kind: str) -> str:
    """``applicant.age``; a client's own key (an unknown field, a non-identifier) as ``<key>``."""
    parts = [str(p) if isinstance(p, int) or _FIELD.match(p) else "<key>" for p in loc]
    if kind == "extra_forbidden" and parts:  # the unknown field's name is the client's text
        parts[-1] = "<key>"
    return ".".join(parts) or "body"


def client_error_summary(exc: BaseException) -> str | None:
    """One line for a client's bad request (no input values), None for other exceptions.

    Args:
        exc: what BentoML caught while answering.

    Returns:
        ``400 invalid input: applicant.age (greater_than_equal); ...`` for a pydantic
        ``ValidationError``, ``422 applicants: at most 1000 items, got 1001`` for a
        ``BentoMLException`` of a 4xx status, else None.
    """
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        where = [_location(e["loc"], e["type"]) for e in errors]
        shown = "; ".join(f"{w} ({e['type']})" for w, e in zip(where[:5], errors, strict=False))
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        return f"400 invalid input: {shown}{more}"
    status = getattr(getattr(exc, "error_code", None), "value", None)
    if isinstance(status, int) and 400 <= status < 500 and hasattr(exc, "message"):
        return f"{status} {exc.message}"
    return None


def configured_secrets() -> list[str]:
    """The secret values in finbento settings (admin token, API keys, Gemini key...)."""
    from pydantic import BaseModel, SecretStr

    from finbento.settings import get_settings

    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple | set):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(get_settings())
    return [s for s in found if len(s) >= 4]  # a 1-3 character "secret" would mask everything


class PrivacyFilter(logging.Filter):
    """Logging filter: client errors as one line, secrets and input values out of the rest.

    Args:
        secrets: exact values to mask wherever they appear (default: :func:`configured_secrets`).
    """

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        self.secrets = sorted(configured_secrets() if secrets is None else secrets, key=len,
                              reverse=True)  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; never drops one."""
        exc = record.exc_info[1] if record.exc_info else None
        summary = client_error_summary(exc) if exc is not None else None
        message = record.getMessage()
        if summary is not None:  # the caller's mistake: no traceback, no values
            message = f"{message}: {summary}"
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        elif record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redact(text, self.secrets)
            record.exc_info = None
        record.msg, record.args = redact(message, self.secrets), None
        return True


def install(secrets: Iterable[str] | None = None) -> int:
    """Put one :class:`PrivacyFilter` first on every handler of every logger now configured.

    Call it after logging is configured (BentoML configures a worker's logging before it imports
    the service). Idempotent.

    Returns:
        How many handlers got the filter.
    """
    loggers = [
        logging.getLogger(),
        *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)),
    ]
    privacy, added = PrivacyFilter(secrets), 0  # fmt: skip
    for handler in {h for lg in loggers for h in lg.handlers}:
        if not any(isinstance(f, PrivacyFilter) for f in handler.filters):
            handler.filters.insert(0, privacy)  # first: BentoML's filter formats the level
            added += 1
    return added
