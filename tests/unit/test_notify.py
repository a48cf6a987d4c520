"""Notification channels against local sinks: payload shapes, signatures, retries, filtering."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from monitoring.notify import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Channel,
    EmailChannel,
    Event,
    Notifier,
    NotifyConfig,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
    sign,
    verify_signature,
)
from tests.sinks import HttpSink, SmtpSink, dead_url, free_port

FAST = {"timeout_s": 2.0, "backoff_s": 0.0}
WHEN = datetime(2026, 3, 1, 4, 30, tzinfo=UTC)


def drift(severity: str = "critical", **kw: object) -> Event:
    return Event(
        "drift",
        severity,  # type: ignore[arg-type]
        "credit-risk: 6 of 20 features drifted",
        {"share_drifted": 0.3, "drifted": "income, age <30", "window_rows": 5000},
        model="credit-risk",
        timestamp=WHEN,
        **kw,  # type: ignore[arg-type]
    )


def sample(channel: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "ml_notifications_total", {"channel": channel, "outcome": outcome}
    )
    return value or 0.0


# --- Event -------------------------------------------------------------------------------------


def test_event_defaults_and_validation():
    event = drift()
    assert event.dedup_key == "finbento:drift:credit-risk"
    assert Event("failure", "warning", "nightly retrain failed").dedup_key == "finbento:failure"
    assert json.loads(json.dumps(event.to_dict()))["timestamp"] == "2026-03-01T04:30:00+00:00"
    assert event.headline == "[CRITICAL] drift: credit-risk: 6 of 20 features drifted"
    numpy = pytest.importorskip("numpy")
    odd = Event("drift", "info", "t", {"n": numpy.int64(3), "p": numpy.float32(0.5), "x": math.nan})
    assert json.loads(json.dumps(odd.to_dict()))["details"] == {"n": 3, "p": 0.5, "x": "nan"}
    for bad in (
        {"kind": "oops"},
        {"severity": "error"},
        {"title": "two\nlines"},
        {"title": " "},
        {"timestamp": datetime(2026, 3, 1)},
        {"details": {"x": [1]}},
    ):
        args = {"kind": "drift", "severity": "info", "title": "t", **bad}
        with pytest.raises(ValueError):
            Event(**args)  # type: ignore[arg-type]


# --- Slack -------------------------------------------------------------------------------------


def test_slack_payload_shape():
    with HttpSink(reply=b"ok") as sink:
        SlackChannel(sink.url + "/services/T/B/X", **FAST).send(drift())
    [req] = sink.requests
    assert (req.method, req.path) == ("POST", "/services/T/B/X")
    assert req.headers["Content-Type"] == "application/json"
    body = req.json()
    assert body["text"] == (
        ":rotating_light: [CRITICAL] drift: credit-risk: 6 of 20 features drifted"
    )
    header, section, context = body["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": drift().headline, "emoji": True},
    }
    assert section["type"] == "section"
    assert {"type": "mrkdwn", "text": "*drifted*\nincome, age &lt;30"} in section["fields"]
    assert {"type": "mrkdwn", "text": "*share_drifted*\n0.3"} in section["fields"]
    assert context["type"] == "context"
    assert context["elements"][1]["text"].startswith(f"<!date^{int(WHEN.timestamp())}^")
    resolved = SlackChannel("http://unused").payload(drift(resolved=True))
    assert resolved["text"].startswith(":white_check_mark: [RESOLVED] drift:")


# --- generic webhook ---------------------------------------------------------------------------


def test_webhook_signed_body_verifies_with_secret():
    with HttpSink() as sink:
        WebhookChannel(sink.url + "/hook", secret="s3cret", **FAST).send(drift())
    [req] = sink.requests
    assert req.json() == drift().to_dict()
    ts, sig = req.headers[TIMESTAMP_HEADER], req.headers[SIGNATURE_HEADER]
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert abs(int(ts) - time.time()) < 60
    assert verify_signature("s3cret", req.body, ts, sig)
    assert not verify_signature("wrong", req.body, ts, sig)
    assert not verify_signature("s3cret", req.body + b" ", ts, sig)
    assert not verify_signature("s3cret", req.body, str(int(ts) + 1), sig)  # altered timestamp
    stale = str(int(time.time()) - 3600)  # a replayed hour-old request
    assert not verify_signature("s3cret", req.body, stale, sign("s3cret", req.body, stale))


def test_webhook_without_secret_is_unsigned():
    with HttpSink() as sink:
        WebhookChannel(sink.url, **FAST).send(drift())
    assert SIGNATURE_HEADER not in sink.requests[0].headers
    assert sink.requests[0].headers["X-Finbento-Event"] == "drift"


# --- PagerDuty ---------------------------------------------------------------------------------


def test_pagerduty_events_v2_trigger_and_resolve():
    reply = b'{"status":"success","message":"Event processed","dedup_key":"k"}'
    with HttpSink(status=202, reply=reply) as sink:
        channel = PagerDutyChannel("R0UT1NGKEY", base_url=sink.url + "/", source="sched-1", **FAST)
        channel.send(drift())
        channel.send(drift(resolved=True))
        channel.send(Event("failure", "warning", "nightly retrain failed", timestamp=WHEN))
    trigger, resolve, failure = (r.json() for r in sink.requests)
    assert {r.path for r in sink.requests} == {"/v2/enqueue"}
    assert trigger == {
        "routing_key": "R0UT1NGKEY",
        "event_action": "trigger",
        "dedup_key": "finbento:drift:credit-risk",
        "client": "finbento",
        "payload": {
            "summary": drift().headline,
            "source": "sched-1",
            "severity": "critical",
            "timestamp": "2026-03-01T04:30:00+00:00",
            "component": "credit-risk",
            "group": "finbento",
            "class": "drift",
            "custom_details": dict(drift().details),
        },
    }
    assert resolve == {
        "routing_key": "R0UT1NGKEY",
        "event_action": "resolve",
        "dedup_key": "finbento:drift:credit-risk",
    }
    assert failure["payload"]["severity"] == "error"
    assert "component" not in failure["payload"]


# --- e-mail ------------------------------------------------------------------------------------


def test_email_subject_body_recipients():
    with SmtpSink() as sink:
        channel = EmailChannel(
            "127.0.0.1", sink.port, "ml@example.org", ["a@example.org", "b@example.org"],
            starttls=False, min_severity="info",
        )  # fmt: skip
        channel.send(drift())
    [mail] = sink.messages
    assert mail.mail_from == "ml@example.org"
    assert mail.rcpt_tos == ["a@example.org", "b@example.org"]
    msg = mail.message
    assert msg["Subject"] == "[finbento] [CRITICAL] drift: credit-risk: 6 of 20 features drifted"
    assert msg["To"] == "a@example.org, b@example.org"
    assert msg.get_content_type() == "text/plain"
    assert "dedup key: finbento:drift:credit-risk" in mail.body
    assert "  share_drifted: 0.3\n" in mail.body
    assert "  drifted: income, age <30\n" in mail.body


def test_email_login():
    with SmtpSink(accept_login=True) as sink:
        EmailChannel(
            "127.0.0.1", sink.port, "ml@example.org", ["a@example.org"],
            starttls=False, username="bot", password="pw",
        ).send(drift())  # fmt: skip
    assert sink.logins == [("bot", "pw")]
    assert len(sink.messages) == 1


# --- retries, failures, filtering --------------------------------------------------------------


def test_retries_after_500_then_sent():
    with HttpSink(script=[500, 503]) as sink:
        notifier = Notifier([SlackChannel(sink.url, name="slack-retry", retries=2, **FAST)])
        result = notifier.notify(drift())
    assert result["slack-retry"].outcome == "sent"
    assert len(sink.requests) == 3
    assert sink.requests[0].body == sink.requests[2].body


def test_4xx_is_not_retried():
    with HttpSink(status=404, reply=b"channel_not_found") as sink:
        result = Notifier([SlackChannel(sink.url, name="slack-404", **FAST)]).notify(drift())
    assert len(sink.requests) == 1
    assert result["slack-404"].outcome == "failed"
    assert result["slack-404"].error == "HTTP 404: channel_not_found"


class Broken(Channel):
    def send(self, event: Event) -> None:
        raise RuntimeError("bug in a channel")


def test_dead_endpoints_fail_without_raising_and_are_counted():
    before = sample("pd-dead", "failed")
    with HttpSink() as sink:
        notifier = Notifier(
            [
                PagerDutyChannel("k", base_url=dead_url(), name="pd-dead", retries=1, **FAST),
                EmailChannel(
                    "127.0.0.1",
                    free_port(),
                    "a@x.org",
                    ["b@x.org"],
                    starttls=False,
                    retries=0,
                    name="mail-dead",
                ),
                Broken("broken"),
                WebhookChannel(sink.url, name="hook-ok", **FAST),
            ]
        )
        result = notifier.notify(drift())
    assert {n: d.outcome for n, d in result.items()} == {
        "pd-dead": "failed",
        "mail-dead": "failed",
        "broken": "failed",
        "hook-ok": "sent",
    }
    assert "ConnectError" in (result["pd-dead"].error or "")
    assert result["broken"].error == "RuntimeError: bug in a channel"
    assert sample("pd-dead", "failed") == before + 1
    assert len(sink.requests) == 1


def test_min_severity_filtering():
    with HttpSink(status=202) as pd, HttpSink() as slack:
        notifier = Notifier(
            [
                PagerDutyChannel("k", base_url=pd.url, name="pd-filter", **FAST),
                SlackChannel(slack.url, name="slack-filter", min_severity="warning", **FAST),
            ]
        )
        info = notifier.notify(Event("promotion", "info", "credit-risk v8 is champion"))
        warning = notifier.notify(drift("warning"))
        critical = notifier.notify(drift("critical"))
    assert [d.outcome for d in info.values()] == ["skipped", "skipped"]
    assert [d.outcome for d in warning.values()] == ["skipped", "sent"]
    assert [d.outcome for d in critical.values()] == ["sent", "sent"]
    assert (len(pd.requests), len(slack.requests)) == (1, 2)
    assert sample("pd-filter", "skipped") == 2


# --- config ------------------------------------------------------------------------------------


def test_from_config_builds_enabled_channels():
    assert Notifier.from_config(NotifyConfig()).channels == []
    config = NotifyConfig(
        slack_webhook_url="https://hooks.slack.com/services/T/B/X",
        webhook_url="https://example.org/hook",
        webhook_secret="s",
        smtp_host="smtp.example.org",
        smtp_from="ml@example.org",
        smtp_to=["ops@example.org"],
        pagerduty_routing_key="R",
        pagerduty_min_severity="warning",
    )
    assert "hooks.slack.com" not in repr(config)  # the webhook URL is the credential
    channels = Notifier.from_config(config).channels
    assert [(c.name, c.min_severity) for c in channels] == [
        ("slack", "info"),
        ("webhook", "info"),
        ("email", "warning"),
        ("pagerduty", "warning"),
    ]
    with pytest.raises(ValidationError):
        NotifyConfig(smtp_host="smtp.example.org")
    with pytest.raises(ValueError):
        Notifier([Broken("x"), Broken("x")])
