"""Notifications of the unattended loop: drift, promotion, rejection and failure events.

The scheduler builds an :class:`Event` and hands it to a :class:`Notifier`, which fans it out to
every configured channel at or above that channel's minimum severity:

- :class:`SlackChannel`: a Slack incoming webhook (Slack: "Sending messages using incoming
  webhooks", https://api.slack.com/messaging/webhooks; layout per Slack's "Block Kit" reference).
  Any Slack-compatible receiver (Mattermost, Rocket.Chat) takes the same ``text`` field.
- :class:`WebhookChannel`: the event itself as JSON, optionally signed with HMAC-SHA256.
- :class:`EmailChannel`: a plain-text e-mail over SMTP (``smtplib``), optional STARTTLS and login.
- :class:`PagerDutyChannel`: PagerDuty Events API v2 (PagerDuty: "Events API v2 Overview" and
  "Send an Alert Event", https://developer.pagerduty.com/docs/events-api-v2/trigger-events/).

:meth:`Notifier.notify` never raises: each delivery is counted in
``ml_notifications_total{channel,outcome}`` (outcome ``sent``, ``failed`` or ``skipped``) and its
:class:`Delivery` is returned, so a dead chat server never stops a retrain.

Example::

    notifier = Notifier.from_config(settings.notify)
    notifier.notify(Event("drift", "critical", "credit-risk: 6 of 20 features drifted",
                          {"share_drifted": 0.3}, model="credit-risk"))
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import smtplib
import socket
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from types import MappingProxyType
from typing import Any, Literal, get_args

import httpx
from prometheus_client import Counter
from pydantic import BaseModel, Field, SecretStr, model_validator

log = logging.getLogger(__name__)

Kind = Literal["drift", "promotion", "rejection", "failure"]
Severity = Literal["info", "warning", "critical"]
Outcome = Literal["sent", "failed", "skipped"]
DetailValue = str | int | float | bool

KINDS: tuple[str, ...] = get_args(Kind)
SEVERITIES: tuple[str, ...] = get_args(Severity)
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

#: Header names of the signed generic webhook (see :func:`sign` and :func:`verify_signature`).
SIGNATURE_HEADER = "X-Finbento-Signature"
TIMESTAMP_HEADER = "X-Finbento-Timestamp"
USER_AGENT = "finbento-notify/1"

NOTIFICATIONS = Counter(
    "ml_notifications",
    "Notification deliveries by channel and outcome (sent, failed, skipped)",
    ["channel", "outcome"],
)


class DeliveryError(Exception):
    """A channel could not deliver an event (after its retries)."""


@dataclass(frozen=True)
class Event:
    """Something people should hear about.

    Args:
        kind: ``drift``, ``promotion``, ``rejection`` (the gate refused a challenger) or
            ``failure`` (a job failed).
        severity: ``info``, ``warning`` or ``critical``. For a ``resolved`` event, the severity of
            the alert it ends, so it reaches the same channels as that alert did.
        title: One line, e.g. ``"credit-risk: challenger v7 rejected"``.
        details: Facts for the reader, str keys to str/number/bool values (e.g. ``roc_auc``,
            ``share_drifted``, ``run_id``); shown in order. Numpy scalars become Python ones,
            NaN and infinities become strings.
        model: The model concerned (``credit-risk``, ``fraud``, ...), if any.
        timestamp: When it happened, timezone-aware; default now (UTC).
        resolved: True when this event ends an earlier alert with the same ``dedup_key``
            (e.g. drift back to ok); PagerDuty then resolves the incident.
        dedup_key: Identity of the ongoing condition, default ``finbento:<kind>:<model>``
            (``finbento:<kind>`` without a model). PagerDuty groups alerts by it.

    Raises:
        ValueError: An unknown kind or severity, an empty or multi-line title, a non-str detail
            key, an unsupported detail value, or a naive timestamp.
    """

    kind: Kind
    severity: Severity
    title: str
    details: Mapping[str, DetailValue] = field(default_factory=dict)
    model: str | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    resolved: bool = False
    dedup_key: str = ""

    def __post_init__(self) -> None:
        """Validate, copy ``details`` and fill the default ``dedup_key``."""
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; expected one of {KINDS}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}; expected one of {SEVERITIES}")
        if not self.title.strip() or "\n" in self.title or "\r" in self.title:
            raise ValueError("an event title must be one non-empty line")
        details: dict[str, DetailValue] = {}
        for key, value in self.details.items():
            if not isinstance(key, str):
                raise ValueError(f"detail keys must be str, got {key!r}")
            if hasattr(value, "item") and not isinstance(value, DetailValue):
                value = value.item()  # a numpy scalar (np.int64, np.bool_) as a Python one
            if not isinstance(value, DetailValue):
                raise ValueError(f"detail {key!r} must be str, int, float or bool, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                value = str(value)  # NaN and inf are not JSON
            details[key] = value
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            raise ValueError("an event timestamp must be timezone-aware")
        object.__setattr__(self, "details", details)  # a copy the caller cannot change
        if not self.dedup_key:
            key = f"finbento:{self.kind}" + (f":{self.model}" if self.model else "")
            object.__setattr__(self, "dedup_key", key)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (timestamp as ISO 8601), the generic webhook's body."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "title": self.title,
            "details": dict(self.details),
            "model": self.model,
            "timestamp": self.timestamp.isoformat(),
            "resolved": self.resolved,
            "dedup_key": self.dedup_key,
        }

    @property
    def headline(self) -> str:
        """``[CRITICAL] drift: <title>``, or ``[RESOLVED] drift: <title>``."""
        tag = "RESOLVED" if self.resolved else self.severity.upper()
        return f"[{tag}] {self.kind}: {self.title}"


@dataclass(frozen=True)
class Delivery:
    """What happened to one event on one channel.

    Attributes:
        channel: The channel's name.
        outcome: ``sent``, ``failed`` or ``skipped`` (below the channel's minimum severity).
        error: Why it failed (never contains the channel's URL or credentials).
    """

    channel: str
    outcome: Outcome
    error: str | None = None


class Channel(ABC):
    """One destination. Subclasses implement :meth:`send` and raise :class:`DeliveryError`.

    Args:
        name: Label in metrics, logs and :class:`Delivery` (unique within a :class:`Notifier`).
        min_severity: Events below this severity are skipped.
    """

    def __init__(self, name: str, min_severity: Severity = "info") -> None:
        if min_severity not in SEVERITIES:
            raise ValueError(f"unknown min_severity {min_severity!r}; expected one of {SEVERITIES}")
        self.name = name
        self.min_severity = min_severity

    def accepts(self, event: Event) -> bool:
        """Whether the event is at or above this channel's minimum severity."""
        return _RANK[event.severity] >= _RANK[self.min_severity]

    @abstractmethod
    def send(self, event: Event) -> None:
        """Deliver one event.

        Raises:
            DeliveryError: It was not delivered.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, min_severity={self.min_severity!r})"


class HttpChannel(Channel):
    """A channel that POSTs JSON, with a short timeout and retries on 5xx, 429 and network errors.

    Args:
        name: See :class:`Channel`.
        min_severity: See :class:`Channel`.
        timeout_s: Per-attempt timeout, seconds (connect is capped at 3 s).
        retries: Extra attempts after the first (0-5).
        backoff_s: Wait before retry ``n`` is ``backoff_s * n`` seconds.
    """

    def __init__(
        self,
        name: str,
        min_severity: Severity = "info",
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        super().__init__(name, min_severity)
        if not 0 <= retries <= 5:
            raise ValueError("retries must be between 0 and 5")
        self.timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0))
        self.retries = retries
        self.backoff_s = backoff_s

    def _post(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST ``body`` (JSON bytes) to ``url``; the 2xx response.

        Raises:
            DeliveryError: A 4xx other than 429 (not retried), or the last attempt's 5xx, 429 or
                network error. Messages carry the status or error type, never the URL.
        """
        all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        all_headers.update(headers or {})
        error = "no attempt made"
        with httpx.Client(timeout=self.timeout) as client:
            for attempt in range(self.retries + 1):
                if attempt:
                    time.sleep(self.backoff_s * attempt)
                try:
                    response = client.post(url, content=body, headers=all_headers)
                except httpx.TransportError as exc:  # connect, read, timeout, protocol
                    error = f"{type(exc).__name__}: {exc}"
                    continue
                if response.is_success:
                    return response
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500 and response.status_code != 429:
                    break
        raise DeliveryError(error)


class SlackChannel(HttpChannel):
    """Post to a Slack (or Slack-compatible) incoming webhook.

    The message has ``text`` (the notification and fallback line, e.g.
    ``":rotating_light: [CRITICAL] drift: ..."``) and ``blocks``: a header, the details as fields
    (Slack allows 10 per section), and a context line with model, time and dedup key.
    Slack answers 200 ``ok``; ``invalid_payload`` (400), ``channel_not_found`` (404) or
    ``channel_is_archived`` (410) are not retried.

    Args:
        webhook_url: ``https://hooks.slack.com/services/...``; a secret (it is the credential).
        **kwargs: See :class:`HttpChannel` (name default ``slack``).
    """

    EMOJI: Mapping[str, str] = MappingProxyType(
        {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
    )

    def __init__(self, webhook_url: str, *, name: str = "slack", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._url = webhook_url

    def payload(self, event: Event) -> dict[str, Any]:
        """The JSON body Slack expects: ``text`` and Block Kit ``blocks``."""
        emoji = ":white_check_mark:" if event.resolved else self.EMOJI[event.severity]
        text = f"{emoji} {_slack_escape(event.headline)}"
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": _cut(event.headline, 150), "emoji": True},
            }
        ]
        items = [
            f"*{_slack_escape(k)}*\n{_slack_escape(_fmt(v))}" for k, v in event.details.items()
        ]
        for start in range(0, min(len(items), 40), 10):  # 50 blocks at most per message
            fields = [{"type": "mrkdwn", "text": _cut(t, 2000)} for t in items[start : start + 10]]
            blocks.append({"type": "section", "fields": fields})
        unix = int(event.timestamp.timestamp())
        when = f"<!date^{unix}^{{date_short_pretty}} {{time}}|{event.timestamp.isoformat()}>"
        context = [f"*model* {_slack_escape(event.model)}"] if event.model else []
        context += [when, f"`{_slack_escape(event.dedup_key)}`"]
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in context]}
        )
        return {"text": text, "blocks": blocks}

    def send(self, event: Event) -> None:
        """POST :meth:`payload` to the webhook.

        Raises:
            DeliveryError: Slack refused it or could not be reached.
        """
        self._post(self._url, json.dumps(self.payload(event)).encode())


class WebhookChannel(HttpChannel):
    """POST :meth:`Event.to_dict` as JSON to any URL, optionally signed.

    With a secret, the request carries ``X-Finbento-Timestamp: <unix seconds>`` and
    ``X-Finbento-Signature: sha256=<hex>``, the HMAC-SHA256 of ``b"<timestamp>." + body`` keyed
    with the secret. The timestamp is inside the signed bytes, so a receiver that checks it
    (:func:`verify_signature`, 5 minutes' tolerance) rejects replays and altered timestamps.

    Args:
        url: The receiver.
        secret: Shared secret for the signature; None sends unsigned.
        **kwargs: See :class:`HttpChannel` (name default ``webhook``).
    """

    def __init__(
        self, url: str, *, secret: str | None = None, name: str = "webhook", **kwargs: Any
    ) -> None:
        super().__init__(name, **kwargs)
        self._url = url
        self._secret = secret

    def send(self, event: Event) -> None:
        """POST the signed event.

        Raises:
            DeliveryError: A non-2xx answer or an unreachable receiver.
        """
        body = json.dumps(event.to_dict(), separators=(",", ":")).encode()
        headers = {"X-Finbento-Event": event.kind}
        if self._secret:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._secret, body, timestamp)
        self._post(self._url, body, headers)


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """The ``X-Finbento-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``timestamp.body``.

    Args:
        secret: The shared secret (UTF-8).
        body: The raw request body, exactly as sent.
        timestamp: The ``X-Finbento-Timestamp`` header (unix seconds, as a string).
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """Check a signed webhook on the receiving side (constant-time comparison).

    Args:
        secret: The shared secret.
        body: The raw request body, before any JSON parsing.
        timestamp: The ``X-Finbento-Timestamp`` header.
        signature: The ``X-Finbento-Signature`` header.
        tolerance_s: Largest accepted clock difference, seconds.
        now: Current unix time, seconds (default ``time.time()``).

    Returns:
        True if the signature matches and the timestamp is within the tolerance.
    """
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, body, timestamp), signature)


class PagerDutyChannel(HttpChannel):
    """Trigger (and resolve) PagerDuty alerts through the Events API v2.

    POSTs to ``<base_url>/v2/enqueue``: ``routing_key``, ``event_action`` (``trigger``, or
    ``resolve`` for a resolved event), ``dedup_key`` (the event's, so repeats join one incident),
    ``client`` and, on trigger, ``payload`` with ``summary`` (1,024 characters at most),
    ``source``, ``severity``, ``timestamp`` (ISO 8601), ``component`` (the model), ``group``
    (``finbento``), ``class`` (the kind) and ``custom_details``. Severities map one to one, except
    that a non-critical ``failure`` is PagerDuty's ``error``. PagerDuty answers 202; 400 (invalid
    event) is not retried, 429 and 5xx are.

    Args:
        routing_key: The integration key of an Events API v2 integration (a secret).
        base_url: ``https://events.pagerduty.com`` (EU accounts: ``https://events.eu.pagerduty.com``).
        source: The affected system as PagerDuty shows it; default this host's name.
        **kwargs: See :class:`HttpChannel` (name default ``pagerduty``, min_severity ``critical``).
    """

    def __init__(
        self,
        routing_key: str,
        *,
        base_url: str = "https://events.pagerduty.com",
        source: str | None = None,
        name: str = "pagerduty",
        min_severity: Severity = "critical",
        **kwargs: Any,
    ) -> None:
        super().__init__(name, min_severity, **kwargs)
        self._routing_key = routing_key
        self._url = base_url.rstrip("/") + "/v2/enqueue"
        self.source = source or socket.gethostname()

    def payload(self, event: Event) -> dict[str, Any]:
        """The Events API v2 body for this event."""
        body: dict[str, Any] = {
            "routing_key": self._routing_key,
            "event_action": "resolve" if event.resolved else "trigger",
            "dedup_key": event.dedup_key,
        }
        if event.resolved:
            return body
        severity = event.severity
        if event.kind == "failure" and severity != "critical":
            severity = "error"
        payload: dict[str, Any] = {
            "summary": _cut(event.headline, 1024),
            "source": self.source,
            "severity": severity,
            "timestamp": event.timestamp.isoformat(),
            "group": "finbento",
            "class": event.kind,
            "custom_details": dict(event.details),
        }
        if event.model:
            payload["component"] = event.model
        return {**body, "payload": payload, "client": "finbento"}

    def send(self, event: Event) -> None:
        """POST :meth:`payload` to the enqueue endpoint.

        Raises:
            DeliveryError: PagerDuty refused it or could not be reached.
        """
        self._post(self._url, json.dumps(self.payload(event)).encode())


class EmailChannel(Channel):
    """Send a plain-text e-mail through an SMTP server (``smtplib``).

    Subject: ``[finbento] <headline>``; body: the headline, kind, severity, model, time, dedup key
    and one ``key: value`` line per detail. One retry on network errors and 4xx (transient) replies.

    Args:
        host: SMTP server.
        port: SMTP port (587 for STARTTLS submission, 25 for plain relay).
        sender: ``From`` address.
        recipients: ``To`` addresses (at least one).
        starttls: Upgrade with STARTTLS (certificate checked) before any login.
        username: Login user; None for no login.
        password: Login password.
        timeout_s: Socket timeout, seconds.
        retries: Extra attempts after the first.
        name: See :class:`Channel` (default ``email``).
        min_severity: See :class:`Channel` (default ``warning``).

    Raises:
        ValueError: No recipients, or a username without a password.
    """

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        *,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 1,
        name: str = "email",
        min_severity: Severity = "warning",
    ) -> None:
        super().__init__(name, min_severity)
        if not recipients:
            raise ValueError("an email channel needs at least one recipient")
        if username and password is None:
            raise ValueError("an SMTP username needs a password")
        self.host, self.port, self.sender = host, port, sender
        self.recipients = list(recipients)
        self.starttls = starttls
        self._username, self._password = username, password
        self.timeout_s, self.retries = timeout_s, retries

    def message(self, event: Event) -> EmailMessage:
        """The e-mail for this event."""
        msg = EmailMessage()
        msg["Subject"] = f"[finbento] {event.headline}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = format_datetime(event.timestamp)
        msg["Message-ID"] = make_msgid(domain="finbento")
        lines = [
            event.headline,
            "",
            f"kind: {event.kind}",
            f"severity: {event.severity}",
            f"model: {event.model or '-'}",
            f"time: {event.timestamp.isoformat()}",
            f"dedup key: {event.dedup_key}",
        ]
        if event.resolved:
            lines.append("status: resolved")
        if event.details:
            lines += ["", "details:"] + [f"  {k}: {_fmt(v)}" for k, v in event.details.items()]
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def send(self, event: Event) -> None:
        """Send :meth:`message` to every recipient.

        Raises:
            DeliveryError: The server refused it (5xx, all recipients refused, login failed) or
                could not be reached on the last attempt.
        """
        msg = self.message(event)
        error = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(0.5 * attempt)
            try:
                with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                    if self.starttls:
                        smtp.starttls(context=ssl.create_default_context())
                    if self._username:
                        smtp.login(self._username, self._password or "")
                    refused = smtp.send_message(msg)
            except smtplib.SMTPResponseException as exc:  # one server reply: 4xx transient
                error = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
                if exc.smtp_code < 500:
                    continue
                break
            except smtplib.SMTPRecipientsRefused:
                error = "all recipients refused"
                break
            except smtplib.SMTPNotSupportedError as exc:  # e.g. no STARTTLS on this server
                error = f"SMTPNotSupportedError: {exc}"
                break
            except (smtplib.SMTPException, OSError) as exc:  # connect, TLS, disconnect
                error = f"{type(exc).__name__}: {exc}"
                continue
            if refused:
                log.warning("email %s: some recipients refused: %s", self.name, sorted(refused))
            return
        raise DeliveryError(error)


class NotifyConfig(BaseModel):
    """Which channels to use; a channel is on when its address/key is set.

    Meant to be nested in the settings (e.g. ``FINBENTO_NOTIFY__SLACK_WEBHOOK_URL``).

    Raises:
        pydantic.ValidationError: SMTP host without sender or recipients, or login user without
            password.
    """

    slack_webhook_url: SecretStr | None = None
    slack_min_severity: Severity = "info"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_min_severity: Severity = "info"
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_from: str | None = None
    smtp_to: list[str] = Field(default_factory=list)
    smtp_starttls: bool = True
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_min_severity: Severity = "warning"
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_url: str = "https://events.pagerduty.com"
    pagerduty_min_severity: Severity = "critical"
    timeout_s: float = Field(5.0, gt=0, le=60, description="per HTTP attempt, seconds")
    retries: int = Field(2, ge=0, le=5, description="extra HTTP attempts on 5xx/network errors")

    @model_validator(mode="after")
    def _smtp_complete(self) -> NotifyConfig:
        if self.smtp_host and not (self.smtp_from and self.smtp_to):
            raise ValueError("smtp_host needs smtp_from and at least one smtp_to")
        if self.smtp_user and self.smtp_password is None:
            raise ValueError("smtp_user needs smtp_password")
        return self


class Notifier:
    """Fan an event out to channels, concurrently; never raises.

    Args:
        channels: Where to send; names must be unique. None or empty: a notifier that only logs.

    Raises:
        ValueError: Two channels share a name.
    """

    def __init__(self, channels: Sequence[Channel] | None = None) -> None:
        self.channels = list(channels or [])
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique, got {names}")

    @classmethod
    def from_config(cls, config: NotifyConfig) -> Notifier:
        """The channels ``config`` turns on (Slack, webhook, e-mail, PagerDuty, in that order)."""
        http = {"timeout_s": config.timeout_s, "retries": config.retries}
        channels: list[Channel] = []
        if config.slack_webhook_url:
            url = config.slack_webhook_url.get_secret_value()
            channels.append(SlackChannel(url, min_severity=config.slack_min_severity, **http))
        if config.webhook_url:
            secret = config.webhook_secret.get_secret_value() if config.webhook_secret else None
            channels.append(
                WebhookChannel(
                    config.webhook_url,
                    secret=secret,
                    min_severity=config.webhook_min_severity,
                    **http,
                )
            )
        if config.smtp_host and config.smtp_from:
            channels.append(
                EmailChannel(
                    config.smtp_host,
                    config.smtp_port,
                    config.smtp_from,
                    config.smtp_to,
                    starttls=config.smtp_starttls,
                    username=config.smtp_user,
                    password=(
                        config.smtp_password.get_secret_value() if config.smtp_password else None
                    ),
                    timeout_s=max(config.timeout_s, 10.0),
                    min_severity=config.smtp_min_severity,
                )
            )
        if config.pagerduty_routing_key:
            channels.append(
                PagerDutyChannel(
                    config.pagerduty_routing_key.get_secret_value(),
                    base_url=config.pagerduty_url,
                    min_severity=config.pagerduty_min_severity,
                    **http,
                )
            )
        return cls(channels)

    def notify(self, event: Event) -> dict[str, Delivery]:
        """Send ``event`` to every channel that accepts its severity.

        Blocks until every channel is done (at most about ``(retries + 1) * timeout_s`` plus
        back-off for the slowest channel, since channels run in parallel).

        Returns:
            Channel name -> :class:`Delivery`, in channel order.
        """
        log.info("notify %s (%s)", event.headline, event.dedup_key)
        if not self.channels:
            return {}
        with ThreadPoolExecutor(len(self.channels), thread_name_prefix="notify") as pool:
            results = list(pool.map(lambda c: self._deliver(c, event), self.channels))
        return {d.channel: d for d in results}

    @staticmethod
    def _deliver(channel: Channel, event: Event) -> Delivery:
        try:
            if not channel.accepts(event):
                delivery = Delivery(channel.name, "skipped")
            else:
                channel.send(event)
                delivery = Delivery(channel.name, "sent")
        except Exception as exc:  # a notifier must never break the job that called it
            error = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
            log.warning(
                "notification via %s failed for %s: %s", channel.name, event.dedup_key, error
            )
            delivery = Delivery(channel.name, "failed", error)
        NOTIFICATIONS.labels(channel=channel.name, outcome=delivery.outcome).inc()
        return delivery


def _fmt(value: DetailValue) -> str:
    """A detail value for people: floats with 6 significant digits (0.812346, 12345.6)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_escape(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` as Slack's mrkdwn requires ("Formatting text")."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
