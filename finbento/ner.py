"""The ``ner`` model: financial named entities in a user's message, with normalised values.

A spaCy pipeline trained from ``spacy.blank("en")`` (trainers/ner.py) finds ``MONEY``, ``DATE``,
``CATEGORY`` (a kind of spending: "groceries"), ``MERCHANT`` ("Amazon Prime") and ``ACCOUNT``
(an account type: "savings"). An entity ruler adds the money formats the app's users write and the
training data lacks: ``₹500``, ``Rs. 1,200``, ``INR 2.5 lakh``, ``1.2 crore``, ``500/-``, ``5k``,
and ``$``/``£``/``€`` amounts. The tokenizer is taught to split those forms (``Rs.500``,
``INR5000``, ``1.5cr``, ``50rs``, ``5k``) so the ruler and the model see the number apart.
MONEY and DATE entities carry a value (finbento.entity_values).

Serialised as a spaCy ``nlp.to_disk`` directory: the same directory goes into MLflow (as a pyfunc
artifact) and into the BentoML model store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from finbento.entity_values import CURRENCIES, MULTIPLIERS, Prefer, normalise_date, normalise_money

if TYPE_CHECKING:
    from spacy.language import Language

MODEL_NAME = "ner"
LABELS: tuple[str, ...] = ("MONEY", "DATE", "CATEGORY", "MERCHANT", "ACCOUNT")
RULER_NAME = "money_ruler"
RulerPosition = Literal["before", "after", "none"]

#: Multipliers that make a bare number an amount ("2 lakh", "5k"); "thousand" alone does not.
_MONEY_MULTIPLIERS = sorted(m for m in MULTIPLIERS if m not in ("thousand", "million", "billion"))
#: Currency tokens written before the number (lower case).
_CURRENCY_BEFORE = sorted(c for c in CURRENCIES if c in {"₹", "rs", "rs.", "inr", "$", "usd", "£",
                                                       "gbp", "€", "eur"})  # fmt: skip
_NUMBER = {"LIKE_NUM": True}


def money_patterns() -> list[dict[str, Any]]:
    """Entity-ruler patterns for MONEY (token patterns on lower-cased text).

    Three shapes, where ``N`` is a number in digits or words (``500``, ``5,00,000``, ``2.5``,
    ``twenty-five``, ``three hundred and ten``) and ``M`` a multiplier (``k``, ``lakh``,
    ``crore``, ``thousand``, ...): currency first (``₹ N [M]``, ``Rs. N``, ``INR N M``), currency
    last (``N [M] rupees``, ``N €``, ``N /-``, ``N bucks``), and an Indian or ``k`` multiplier
    alone (``2.5 lakh``, ``5 k``; so a "10k run" is money too). Extra spaces are allowed between
    the tokens.
    """
    multiplier = {"LOWER": {"IN": sorted(MULTIPLIERS)}, "OP": "?"}
    before = {"LOWER": {"IN": _CURRENCY_BEFORE}}
    after = {"LOWER": {"IN": sorted(CURRENCIES)}}
    indian = {"LOWER": {"IN": _MONEY_MULTIPLIERS}}
    scale = {"LOWER": {"IN": ["hundred", "thousand", "lakh", "lakhs", "crore", "crores"]}}
    numbers = [  # "500", "twenty five", "twenty-five", "three hundred and ten"
        [{**_NUMBER, "OP": "+"}],
        [_NUMBER, {"ORTH": "-"}, _NUMBER],
        [{**_NUMBER, "OP": "*"}, scale, {"LOWER": "and"}, {**_NUMBER, "OP": "+"}],
    ]
    shapes = [
        shape
        for number in numbers
        for shape in (
            [before, *number, multiplier],
            [*number, multiplier, after],
            [*number, indian],
        )
    ]
    return [{"label": "MONEY", "pattern": _spaced(shape)} for shape in shapes]


def _spaced(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Allow extra whitespace tokens ("Rs   500") between the tokens of a pattern."""
    out = tokens[:1]
    for token in tokens[1:]:
        out += [{"IS_SPACE": True, "OP": "*"}, token]
    return out


def customise_tokenizer(nlp: Language) -> None:
    """Split glued money forms: ``Rs.500``, ``INR5000``, ``1.5cr``, ``50rs``, ``5k``, ``500/-``.

    Keeps ``Rs.`` one token. The rules are part of the tokenizer, so ``nlp.to_disk`` saves them.
    """
    from spacy.util import compile_prefix_regex, compile_suffix_regex

    prefixes = [r"(?i:rs\.?|inr)(?=[0-9])", *nlp.Defaults.prefixes]
    suffixes = [r"(?<=[0-9])(?i:k|cr|rs|lakhs?|lacs?|crores?|/-)", *nlp.Defaults.suffixes]
    nlp.tokenizer.prefix_search = compile_prefix_regex(prefixes).search
    nlp.tokenizer.suffix_search = compile_suffix_regex(suffixes).search
    for form in ("Rs.", "rs.", "RS."):
        nlp.tokenizer.add_special_case(form, [{"ORTH": form}])


def blank_pipeline() -> Language:
    """``spacy.blank("en")`` with :func:`customise_tokenizer` applied (no components yet)."""
    import spacy

    nlp = spacy.blank("en")
    customise_tokenizer(nlp)
    return nlp


def add_money_ruler(nlp: Language, position: RulerPosition) -> None:
    """Add the MONEY entity ruler before or after the statistical ``ner`` (or not at all).

    Before: the ruler's spans are fixed and ``ner`` labels around them. After: the ruler only fills
    gaps ``ner`` left (it never overwrites). Without a ``ner`` component the ruler is just added.
    """
    if position == "none":
        return
    where: dict[str, str] = {}
    if "ner" in nlp.pipe_names:
        where = {"before": "ner"} if position == "before" else {"after": "ner"}
    ruler = nlp.add_pipe("entity_ruler", name=RULER_NAME, config={"overwrite_ents": False},
                         **where)  # fmt: skip
    ruler.add_patterns(money_patterns())


@lru_cache(maxsize=8192)
def _date_value(text: str, reference: date, prefer: Prefer) -> str | tuple | None:
    value = normalise_date(text, reference, prefer)
    return tuple(value.items()) if isinstance(value, dict) else value


class EntityExtractor:
    """A trained pipeline plus the normalisation settings used at serving time.

    Attributes:
        nlp: the spaCy pipeline (tokenizer, ``ner``, ``money_ruler``).
        default_currency: ISO 4217 code for amounts written without a currency.
        prefer: where ambiguous dates resolve, ``"past"`` or ``"future"``.
    """

    def __init__(self, nlp: Language, default_currency: str = "INR", prefer: Prefer = "past"):
        self.nlp = nlp
        self.default_currency = default_currency
        self.prefer = prefer

    @classmethod
    def load(
        cls, directory: Path, default_currency: str = "INR", prefer: Prefer = "past"
    ) -> EntityExtractor:
        """Load a pipeline written by :meth:`save` (a spaCy ``to_disk`` directory).

        Raises:
            OSError: if ``directory`` holds no spaCy pipeline.
            ValueError: if the pipeline has no ``ner`` component.
        """
        import spacy

        nlp = spacy.load(Path(directory))
        if "ner" not in nlp.pipe_names:
            raise ValueError(f"{directory} holds no ner pipeline (components: {nlp.pipe_names})")
        return cls(nlp, default_currency, prefer)

    def save(self, directory: Path) -> None:
        """Write the pipeline into ``directory`` (created if needed) with ``nlp.to_disk``."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.nlp.to_disk(Path(directory))

    def value(self, label: str, text: str, reference: date) -> Any:
        """Normalised value of one entity: MONEY dict, DATE ISO date or range, or None."""
        if label == "MONEY":
            return normalise_money(text, self.default_currency)
        if label == "DATE":
            value = _date_value(text, reference, self.prefer)
            return dict(value) if isinstance(value, tuple) else value
        return None

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """MLflow pyfunc entry: ``text`` (+ ``reference_date``, ISO) -> ``entities`` (JSON).

        ``reference_date`` defaults to today; see :meth:`extract` for the entity fields.
        """
        today = date.today()
        dates = frame["reference_date"] if "reference_date" in frame else [None] * len(frame)
        refs = [date.fromisoformat(str(r)) if isinstance(r, str) and r else today for r in dates]
        out = self.extract([str(t) for t in frame["text"]], refs)
        return pd.DataFrame({"entities": [json.dumps(entities) for entities in out]})

    def extract(
        self, texts: Sequence[str], reference_date: date | Sequence[date], batch_size: int = 256
    ) -> list[list[dict[str, Any]]]:
        """Entities of each text, in text order.

        Args:
            texts: messages, any length the pipeline accepts.
            reference_date: the day each text was written (one for all, or one per text), for
                relative dates.
            batch_size: texts per ``nlp.pipe`` batch.

        Returns:
            per text, a list of ``{"text", "label", "start", "end"}`` (character offsets into the
            text, end exclusive), plus ``"value"`` for MONEY (``{"value", "currency"}`` or None)
            and DATE (ISO date, ``{"start", "end"}`` or None).

        Raises:
            ValueError: if there are not as many reference dates as texts.
        """
        refs = [reference_date] * len(texts) if isinstance(reference_date, date) else (
            list(reference_date))  # fmt: skip
        if len(refs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(refs)} reference dates")
        out: list[list[dict[str, Any]]] = []
        for doc, ref in zip(self.nlp.pipe(texts, batch_size=batch_size), refs, strict=True):
            entities = []
            for ent in doc.ents:
                item: dict[str, Any] = {"text": ent.text, "label": ent.label_,
                                        "start": ent.start_char, "end": ent.end_char}  # fmt: skip
                if ent.label_ in ("MONEY", "DATE"):
                    item["value"] = self.value(ent.label_, ent.text, ref)
                entities.append(item)
            out.append(entities)
        return out
