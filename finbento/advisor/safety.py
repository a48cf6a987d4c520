"""The advisor's safety rules: PII redaction and refusals on the way in, answer rules out.

The rules are data (``data/advisor/safety_rules.yaml``, described in its header); this module
loads and validates them and applies them:

- :meth:`SafetyRules.check_input` normalises the user's message (NFKC, format characters such as
  zero-width spaces removed, every Unicode digit to ``0-9``, dashes to ``-``), replaces PII with
  placeholders (``[AADHAAR]``, ``[PAN]``, ``[CARD]``...; card numbers must pass Luhn and Aadhaar
  numbers Verhoeff) and refuses prompt injection and requests for illegal actions.
- :meth:`SafetyRules.check_output` replaces sentences of the model's answer that promise
  guaranteed returns on market-linked products or make buy/sell calls on securities, and appends
  the disclaimer.

Matching also folds look-alike Cyrillic/Greek letters to Latin, so ``іgnore`` (Cyrillic і) is
caught; the text passed on keeps the user's letters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[2] / "data" / "advisor" / "safety_rules.yaml"

# ---------------------------------------------------------------- normalisation


_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2212": "-",
    }
)
_CONFUSABLES = str.maketrans(
    "асеорхуіјѕԁһӏАВЕКМНОРСТХІЈЅαβεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aceopxyijsdhlABEKMHOPCTXIJSabeikvoptuxABEZHIKMNOPTYX",
)
_LEET = str.maketrans("013457@$", "oieastas")
_DIGIT = re.compile(r"\d")
_SPACES = re.compile(r"[^\S\n]+")


def normalize(text: str, collapse_spaces: bool = True) -> str:
    """Text as the rules see it.

    NFKC, format characters (zero-width spaces, joiners, bidi controls, soft hyphens) removed,
    Unicode digits as ``0-9``, dashes as ``-``, curly quotes straight, CRLF as LF and, with
    ``collapse_spaces``, runs of spaces as one.
    """
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    chars = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cf":
            continue
        chars.append("-" if cat == "Pd" else ch)
    text = "".join(chars).translate(_QUOTES)
    text = _DIGIT.sub(lambda m: str(unicodedata.decimal(m[0])), text)
    return _SPACES.sub(" ", text).strip() if collapse_spaces else text.strip()


def fold(text: str) -> str:
    """Look-alike Cyrillic and Greek letters as Latin ones (one character for one)."""
    return text.translate(_CONFUSABLES)


def compact(text: str) -> str:
    """Letters only, lower-case, leetspeak folded: ``"I.g.n.0.r.e"`` -> ``"ignore"``."""
    return re.sub(r"[^a-z]", "", fold(text).lower().translate(_LEET))


# ---------------------------------------------------------------- checksums

_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 8, 3, 6, 2, 7, 1, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def verhoeff_valid(digits: str) -> bool:
    """True if the last digit of ``digits`` (``0-9`` only) is their Verhoeff check digit."""
    c = 0
    for i, d in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][int(d)]]
    return bool(digits) and c == 0


def luhn_valid(digits: str) -> bool:
    """True if ``digits`` (``0-9`` only) pass the Luhn (mod 10) check of card numbers."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return bool(digits) and total % 10 == 0


_VALIDATORS = {"luhn": luhn_valid, "verhoeff": verhoeff_valid}

# ---------------------------------------------------------------- the rules file


class SafetyRulesError(ValueError):
    """The rules file is missing, not YAML, or breaks the schema (the message says where)."""


class Rule(BaseModel):
    """One rule of the rules file (see its header for what each field does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_.]*$")
    kind: Literal["pii", "injection", "illegal", "returns", "security_call"]
    action: Literal["redact", "refuse", "replace_sentence"]
    patterns: list[str] = Field(min_length=1)
    compact_patterns: list[str] = []
    requires: list[str] = []
    unless: list[str] = []
    exempt: list[str] = []
    not_exempt_with: list[str] = []
    case_sensitive: bool = False
    message: str
    placeholder: str | None = Field(None, pattern=r"^\[[A-Z_]+\]$")
    validator: Literal["luhn", "verhoeff"] | None = None
    context: str | None = None
    context_chars: int = Field(40, ge=1, le=200)
    not_after: str | None = None
    exclude: str | None = None
    replacement: str | None = None


class RulesFile(BaseModel):
    """The whole rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    refusal_message: str = Field(min_length=1)
    disclaimer: str = Field(min_length=1)
    fragments: dict[str, str] = {}
    pii: list[Rule]
    input: list[Rule]
    output: list[Rule]

    @model_validator(mode="after")
    def _sections(self) -> RulesFile:
        ids = [r.id for r in (*self.pii, *self.input, *self.output)]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule ids: {dupes}")
        for section, action in (
            ("pii", "redact"),
            ("input", "refuse"),
            ("output", "replace_sentence"),
        ):
            for r in getattr(self, section):
                if r.action != action:
                    raise ValueError(f"rule {r.id}: action in section {section} must be {action}")
                if section == "pii" and (r.kind != "pii" or not r.placeholder):
                    raise ValueError(f"rule {r.id}: pii rules need kind pii and a placeholder")
                if section == "output" and not r.replacement:
                    raise ValueError(f"rule {r.id}: output rules need a replacement")
        return self


@dataclass(frozen=True)
class _Compiled:
    rule: Rule
    patterns: tuple[re.Pattern[str], ...]
    compact_patterns: tuple[re.Pattern[str], ...]
    requires: tuple[re.Pattern[str], ...]
    unless: tuple[re.Pattern[str], ...]
    exempt: tuple[re.Pattern[str], ...]
    not_exempt_with: tuple[re.Pattern[str], ...]
    context: re.Pattern[str] | None
    not_after: re.Pattern[str] | None
    exclude: re.Pattern[str] | None

    def fires(self, text: str) -> bool:
        """True if the rule applies to ``text`` (one sentence)."""
        if not any(p.search(text) for p in self.patterns):
            return False
        if not all(p.search(text) for p in self.requires):
            return False
        if any(p.search(text) for p in self.unless):
            return False
        exempt = any(p.search(text) for p in self.exempt)
        return not exempt or any(p.search(text) for p in self.not_exempt_with)

    def fires_in(self, sentences: Sequence[str], squeezed: str) -> bool:
        """True if a compact pattern matches ``squeezed`` or the rule fires in one sentence.

        Sentence by sentence, so that an ``unless`` in one sentence cannot excuse another.
        """
        if any(p.search(squeezed) for p in self.compact_patterns):
            return True
        return any(self.fires(s) for s in sentences)


_FRAGMENT = re.compile(r"\{\{(\w+)\}\}")


def _compile(rule: Rule, fragments: dict[str, str]) -> _Compiled:
    flags = 0 if rule.case_sensitive else re.IGNORECASE

    def one(pattern: str, field: str) -> re.Pattern[str]:
        def insert(m: re.Match[str]) -> str:
            if m[1] not in fragments:
                raise SafetyRulesError(f"rule {rule.id}: {field}: unknown fragment {{{{{m[1]}}}}}")
            return fragments[m[1]]

        try:
            return re.compile(_FRAGMENT.sub(insert, pattern), flags)
        except re.error as e:
            raise SafetyRulesError(f"rule {rule.id}: {field}: bad regex {pattern!r}: {e}") from e

    def many(field: str) -> tuple[re.Pattern[str], ...]:
        return tuple(one(p, field) for p in getattr(rule, field))

    def opt(field: str) -> re.Pattern[str] | None:
        value = getattr(rule, field)
        return None if value is None else one(value, field)

    return _Compiled(
        rule,
        many("patterns"),
        many("compact_patterns"),
        many("requires"),
        many("unless"),
        many("exempt"),
        many("not_exempt_with"),
        opt("context"),
        opt("not_after"),
        opt("exclude"),
    )


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class InputCheck:
    """The user's message after the input rules.

    Attributes:
        text: normalised message with PII replaced by placeholders: the only form that may leave
            the service or be stored.
        redacted: kinds of PII replaced, in order of appearance, once each (e.g.
            ``["phone", "pan"]``; the placeholder's name in lower case).
        flags: ids of the input rules that matched (e.g. ``["injection.persona"]``).
        refused: True if a refusing rule matched: do not send the message to the model.
        refusal: the polite message to answer instead (None unless refused).
    """

    text: str
    redacted: list[str]
    flags: list[str]
    refused: bool
    refusal: str | None


@dataclass(frozen=True)
class OutputCheck:
    """The model's answer after the output rules.

    Attributes:
        text: the answer to show: ``body`` plus a blank line and the disclaimer.
        flags: ids of the output rules that rewrote something.
        body: the rewritten answer without the disclaimer (what the chat history keeps).
    """

    text: str
    flags: list[str]
    body: str


# ---------------------------------------------------------------- applying the rules

_INPUT_SENTENCE_END = re.compile(r"(?<=[.?!;])\s+|\n+")
_LIST_MARKER = re.compile(r"^(\s*(?:[-*+•]|\d{1,3}[.)]|#{1,6})?\s*)")
_SENTENCE_END = re.compile(
    r"(?<=[.!?])(?<!\bRs\.)(?<!\brs\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bNo\.)(?<!\bvs\.)"
    r"(?<!\bMr\.)(?<!\bDr\.)(?<!\bSec\.)(?<!\bSt\.)\s+(?=[\"'(*_\[]*[A-Z0-9₹])"
)


class SafetyRules:
    """The compiled rules of one rules file.

    Args:
        spec: the validated rules file.

    Raises:
        SafetyRulesError: if a pattern does not compile or uses an unknown fragment.
    """

    def __init__(self, spec: RulesFile) -> None:
        self.spec = spec
        self.pii = [_compile(r, spec.fragments) for r in spec.pii]
        self.input = [_compile(r, spec.fragments) for r in spec.input]
        self.output = [_compile(r, spec.fragments) for r in spec.output]

    @classmethod
    def load(cls, path: str | Path | None = None) -> SafetyRules:
        """Load, validate and compile a rules file.

        Args:
            path: a YAML rules file; default ``data/advisor/safety_rules.yaml``.

        Raises:
            SafetyRulesError: if the file is missing, not YAML, or invalid (the message names the
                field or rule).
        """
        path = Path(path) if path is not None else DEFAULT_RULES_PATH
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise SafetyRulesError(f"cannot read safety rules {path}: {e}") from e
        except yaml.YAMLError as e:
            raise SafetyRulesError(f"safety rules {path} are not valid YAML: {e}") from e
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: object, source: str = "<dict>") -> SafetyRules:
        """Validate and compile rules given as a mapping (the parsed YAML).

        Raises:
            SafetyRulesError: if the mapping breaks the schema.
        """
        try:
            spec = RulesFile.model_validate(data)
        except ValidationError as e:
            raise SafetyRulesError(f"invalid safety rules {source}: {e}") from e
        return cls(spec)

    @property
    def rule_ids(self) -> list[str]:
        """Every rule id, in file order."""
        return [c.rule.id for c in (*self.pii, *self.input, *self.output)]

    def redact_pii(self, text: str) -> tuple[str, list[str]]:
        """Normalise ``text`` and replace PII with placeholders.

        Rules run in file order and the first rule to claim a span keeps it, so e.g. a 12-digit
        number after "account" is an ``[ACCOUNT]``, not an ``[AADHAAR]``.

        Returns:
            The redacted text and the kinds replaced (in order of appearance, once each).
        """
        text = normalize(text)
        seen = fold(text)
        spans: list[tuple[int, int, str]] = []
        for c in self.pii:
            for pattern in c.patterns:
                for m in pattern.finditer(seen):
                    start, end = m.span()
                    if any(start < e and s < end for s, e, _ in spans):
                        continue
                    if not self._pii_ok(c, m, seen):
                        continue
                    spans.append((start, end, c.rule.placeholder or ""))
        spans.sort()
        out, kinds, pos = [], [], 0
        for start, end, placeholder in spans:
            out += [text[pos:start], placeholder]
            pos = end
            kind = placeholder.strip("[]").lower()
            if kind not in kinds:
                kinds.append(kind)
        out.append(text[pos:])
        return "".join(out), kinds

    @staticmethod
    def _pii_ok(c: _Compiled, m: re.Match[str], seen: str) -> bool:
        start, value = m.start(), m[0]
        digits = re.sub(r"[^0-9]", "", value)
        if c.rule.validator and not _VALIDATORS[c.rule.validator](digits):
            return False
        if c.exclude is not None and c.exclude.search(digits or value):
            return False
        if c.not_after is not None and c.not_after.search(seen[max(0, start - 12) : start]):
            return False
        before = seen[max(0, start - c.rule.context_chars) : start]
        return c.context is None or bool(c.context.search(before))

    def redact(self, text: str) -> str:
        """``text`` with PII replaced (for storing text: e.g. ``ChatHistory(sanitize=...)``)."""
        return self.redact_pii(text)[0]

    def check_input(self, message: str) -> InputCheck:
        """Redact PII from a user message and decide whether to refuse it.

        Input rules run on the redacted text, sentence by sentence (compact patterns on the whole
        message).

        Args:
            message: the user's message as received (any Unicode).

        Returns:
            The redacted text, the kinds redacted, the rules matched and, if refused, the
            message to answer instead (the first refusing rule's message).
        """
        text, kinds = self.redact_pii(message)
        seen = fold(text)
        sentences = [s for s in _INPUT_SENTENCE_END.split(seen) if s.strip()] or [seen]
        squeezed = compact(text)
        fired = [c.rule for c in self.input if c.fires_in(sentences, squeezed)]
        refusals = [r for r in fired if r.action == "refuse"]
        return InputCheck(
            text=text,
            redacted=kinds,
            flags=[r.id for r in fired],
            refused=bool(refusals),
            refusal=(refusals[0].message or self.spec.refusal_message) if refusals else None,
        )

    def check_output(self, answer: str) -> OutputCheck:
        """Apply the output rules to the model's answer and append the disclaimer.

        Each sentence is checked on its own; the first matching rule replaces it with the rule's
        replacement (once per answer: later matches of the same rule are dropped). Lines,
        list markers and markdown stay as they were.

        Args:
            answer: the model's answer.

        Returns:
            The answer with the disclaimer, the rules that fired and the answer without it.
        """
        flags: list[str] = []
        lines = []
        for line in normalize(answer, collapse_spaces=False).split("\n"):
            marker = _LIST_MARKER.match(line)
            prefix = marker[1] if marker else ""
            kept = [s for s in self._sentences(line[len(prefix) :], flags) if s]
            if kept or not line.strip():
                lines.append(prefix + " ".join(kept) if kept else "")
        body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        disclaimer = " ".join(self.spec.disclaimer.split())
        text = body if body.endswith(disclaimer) else f"{body}\n\n{disclaimer}".strip()
        return OutputCheck(text=text, flags=flags, body=body)

    def _sentences(self, line: str, flags: list[str]) -> Sequence[str]:
        out = []
        for sentence in _SENTENCE_END.split(line):
            seen = fold(sentence)
            rule = next((c.rule for c in self.output if c.fires(seen)), None)
            if rule is None:
                out.append(sentence)
            elif rule.id not in flags:
                flags.append(rule.id)
                out.append(" ".join((rule.replacement or "").split()))
        return out
