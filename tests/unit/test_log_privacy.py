"""Secrets and request content kept out of log lines (finbento/log_privacy.py)."""

import io
import logging

import pytest
from bentoml.exceptions import BentoMLException, NotFound
from pydantic import BaseModel, ConfigDict, ValidationError

from finbento import log_privacy
from finbento.log_privacy import PrivacyFilter, mask_url, pseudonym
from services.schemas import BatchSizeError

PII = "my IBAN is GB33BUKB20201555555555"


@pytest.mark.parametrize(
    ("url", "masked"),
    [("postgresql://mlflow:s3cret@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
     ("postgresql+psycopg://u:p%40ss@h/db", "postgresql+psycopg://u:***@h/db"),
     ("redis://:redispw@cache:6379/0", "redis://:***@cache:6379/0"),
     ("http://mlflow:5000", "http://mlflow:5000"), ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
     ("postgresql://mlflow@db/mlflow", "postgresql://mlflow@db/mlflow"),
     ("tracking a://u:1@h and b://v:2@k", "tracking a://u:***@h and b://v:***@k")],
)  # fmt: skip
def test_mask_url_hides_only_the_password(url, masked):
    assert mask_url(url) == masked


def test_pseudonym_is_stable_and_not_the_id():
    assert pseudonym("customer-42") == pseudonym("customer-42") != pseudonym("customer-43")
    assert len(pseudonym("customer-42")) == 12 and int(pseudonym("customer-42"), 16) >= 0


class Text(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    n: int


def validation_error(body: dict) -> ValidationError:
    try:
        Text.model_validate(body)
    except ValidationError as exc:
        return exc
    raise AssertionError("valid")


def logged(
    exc: BaseException | None,
    message: str = "Exception on %s [%s]",
    args: tuple = ("/predict/intent", "POST"),
) -> tuple[str, int]:
    """What a handler with the filter writes for one ``logger.error(..., exc_info=exc)``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(PrivacyFilter(["k-secret-1"]))
    logger = logging.getLogger(f"test-log-privacy-{id(stream)}")
    logger.propagate, levels = False, []
    logger.addHandler(handler)
    handler.addFilter(lambda r: levels.append(r.levelno) or True)
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    logger.error(message, *args, exc_info=exc_info)
    return stream.getvalue(), levels[0]


def test_a_validation_error_is_one_info_line_naming_fields_and_types_not_values():
    exc = validation_error({"text": 5, "n": PII, PII: 1, "GB33BUKB20201555555555": 2})
    assert PII in str(exc)  # what BentoML would log: pydantic echoes the input
    text, level = logged(exc)
    assert PII not in text and "GB33" not in text and "Traceback" not in text
    assert text.strip() == (
        "INFO Exception on /predict/intent [POST]: 400 invalid input: "
        "text (string_type); n (int_parsing); <key> (extra_forbidden); <key> (extra_forbidden)"
    )
    assert level == logging.INFO


def test_a_4xx_bentoml_error_is_one_line_and_a_5xx_keeps_its_traceback_redacted():
    text, level = logged(BatchSizeError("applicants", "at most 1000 items, got 1001"))
    assert text.strip().endswith(": 422 applicants: at most 1000 items, got 1001")
    assert "Traceback" not in text and level == logging.INFO
    assert "404 nope" in logged(NotFound("nope"))[0]

    try:
        try:
            Text.model_validate({"text": PII, "n": "x"})
        except ValidationError as inner:
            raise RuntimeError("db at postgresql://u:pgsecret@db/x refused k-secret-1") from inner
    except RuntimeError as exc:
        text, level = logged(exc)
    assert "Traceback" in text and "RuntimeError" in text and "ValidationError" in text
    assert level == logging.ERROR
    for leak in ("GB33", "pgsecret", "k-secret-1"):
        assert leak not in text
    assert "postgresql://u:***@db/x" in text and "input_value=***" in text


def test_plain_messages_lose_secrets_and_url_passwords_but_keep_the_rest():
    text, _ = logged(None, "retrain failed: %s via %s", ("k-secret-1", "redis://:pw9@r:1/0"))
    assert text.strip() == "ERROR retrain failed: *** via redis://:***@r:1/0"


def test_a_5xx_bentoml_error_is_not_taken_for_a_client_error():
    try:
        raise BentoMLException("boom")  # status 500
    except BentoMLException as exc:
        text, level = logged(exc)
    assert "Traceback" in text and level == logging.ERROR


def test_configured_secrets_come_from_settings(monkeypatch):
    from finbento.settings import get_settings

    monkeypatch.setenv("FINBENTO_API_KEYS", '["key-one-123", "key-two-456"]')
    monkeypatch.setenv("FINBENTO_ADMIN_TOKEN", "admin-token-789")
    monkeypatch.setenv("FINBENTO_NOTIFY__SMTP_PASSWORD", "smtp-pass-000")
    get_settings.cache_clear()
    try:
        found = set(log_privacy.configured_secrets())
    finally:
        get_settings.cache_clear()
    assert {"key-one-123", "key-two-456", "admin-token-789", "smtp-pass-000"} <= found


def test_install_puts_the_filter_first_once_so_the_level_bentoml_formats_is_the_new_one():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(bracketed)s %(message)s"))

    def bentoml_like(record):  # BentoML's TraceRecordFilter formats the level this way
        record.bracketed = f"[{record.levelname}]"
        return True

    handler.addFilter(bentoml_like)
    logger = logging.getLogger("test-log-privacy-install")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        assert log_privacy.install(secrets=[]) >= 1
        log_privacy.install(secrets=[])
        assert sum(isinstance(f, PrivacyFilter) for f in handler.filters) == 1
        assert isinstance(handler.filters[0], PrivacyFilter)
        try:
            raise BatchSizeError("texts", "at most 1000 items, got 1001")
        except BatchSizeError:
            logger.exception("Exception on /predict/ner/batch [POST]")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().startswith("[INFO] Exception on /predict/ner/batch [POST]: 422 texts")
