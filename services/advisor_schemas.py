"""Request and response schemas of the advisor route (``/advice``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.schemas import _ID, no_control_chars

#: Longest message accepted, in characters.
MAX_MESSAGE_CHARS = 4_000


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("message must contain a non-whitespace character")
    return text


class AdviceRequest(BaseModel):
    """One chat message to the advisor."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(
        None, pattern=_ID, description="The user, for a profile from the other models (optional)"
    )
    session_id: str = Field(pattern=_ID, description="The chat session (history is kept per id)")
    message: Annotated[
        str,
        Field(min_length=1, max_length=MAX_MESSAGE_CHARS),
        AfterValidator(_not_blank),
        AfterValidator(no_control_chars),
    ] = Field(description="The user's message, 1-4,000 characters")


class Source(BaseModel):
    """A knowledge-base document the answer rests on."""

    title: str
    url: str = Field(description="Official source")
    as_of: str = Field(description="Date the document's facts were checked, YYYY-MM-DD")


class Safety(BaseModel):
    """What the safety rules did."""

    redacted: list[str] = Field(description="Kinds of PII removed before the message went on")
    flags: list[str] = Field(description="Ids of the safety rules that fired")
    refused: bool = Field(description="The message was refused; no model saw it")


class AdvicePrediction(BaseModel):
    """The advisor's answer."""

    answer: str = Field(description="The answer, with a short disclaimer")
    sources: list[Source]
    safety: Safety
    mode: Literal["gemini", "offline"] = Field(
        description="gemini, or offline: extractive from the knowledge base (no API key or "
        "Gemini failed)"
    )
    degraded: bool = Field(description="Gemini is configured but failed: offline answer given")
    history_available: bool = Field(description="Chat history could be read and written")
    session_id: str
    model: str = "advisor"
    model_version: str
