"""The advisor's knowledge base: markdown documents on Indian personal finance, cut into chunks.

Each document is one topic in ``data/advisor/knowledge/<doc id>.md``: a YAML front matter
(``title``, ``url`` of the official source, ``as_of`` date the facts reflect, ``source`` names)
and a markdown body whose ``##`` sections are short and self-contained. A chunk is one section
(the text before the first ``##`` is the section "Overview"); a section longer than
``max_words`` is split at paragraph boundaries (and a paragraph still too long, at line and
sentence boundaries). The document title and section name are prepended to a chunk's text for
embedding (:meth:`Chunk.embedding_text`), so a chunk keeps its topic when read alone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

#: The advisor's shipped data: the knowledge base and the labelled retrieval questions.
DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "advisor"
#: The shipped knowledge base.
KNOWLEDGE_DIR = DATA_DIR / "knowledge"
#: Front-matter fields every document must have.
REQUIRED_FIELDS = ("title", "url", "as_of", "source")
#: Words per chunk above which a section is split.
MAX_WORDS = 120
#: Section name of the text before a document's first ``##`` heading.
OVERVIEW = "Overview"

_DOC_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", re.DOTALL)
_HEADING = re.compile(r"^##\s+(.+?)\s*$", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


@dataclass(frozen=True)
class Document:
    """One knowledge-base document.

    Attributes:
        id: file name without ``.md`` (lower-case words joined by hyphens), e.g. ``ppf``.
        title: human title, e.g. "Public Provident Fund (PPF)".
        url: official source page (``https://``).
        as_of: date the facts were checked against the source.
        sources: names of the sources (scheme rules, acts, regulator circulars).
        body: markdown after the front matter.
    """

    id: str
    title: str
    url: str
    as_of: dt.date
    sources: tuple[str, ...]
    body: str


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage: a section (or part of one) of a document.

    Attributes:
        id: ``<doc id>#<section slug>``, with ``-<part>`` (from 2) for parts of a split section.
        doc_id: id of the document.
        title: the document's title.
        section: the ``##`` heading (or "Overview").
        text: the section's markdown text (without the heading).
        url: the document's source url.
        as_of: the document's ``as_of`` date, ISO ``YYYY-MM-DD``.
    """

    id: str
    doc_id: str
    title: str
    section: str
    text: str
    url: str
    as_of: str

    def embedding_text(self) -> str:
        """What is embedded: ``"<title> - <section>: <text>"``."""
        return f"{self.title} - {self.section}: {self.text}"


def parse_document(path: Path) -> Document:
    """Read and validate one document.

    Args:
        path: a ``.md`` file with YAML front matter between ``---`` lines.

    Returns:
        the document; its id is the file name without ``.md``.

    Raises:
        ValueError: naming the file and the problem: a bad file name, no front matter, invalid
            YAML, a missing or empty required field, a url that is not ``https://``, an
            ``as_of`` that is not a ``YYYY-MM-DD`` date, or a body without ``##`` sections.
    """
    path = Path(path)
    doc_id = path.stem
    if not _DOC_ID.match(doc_id):
        raise ValueError(f"{path}: file name must be lower-case words joined by '-'")
    match = _FRONT_MATTER.match(path.read_text(encoding="utf-8"))
    if match is None:
        raise ValueError(f"{path}: no YAML front matter between '---' lines at the top")
    try:
        meta = yaml.safe_load(match.group(1))
    except (yaml.YAMLError, ValueError) as e:  # ValueError: a date like 2025-13-01
        raise ValueError(f"{path}: invalid front matter: {e}") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: front matter must be a mapping of fields")
    for field in REQUIRED_FIELDS:
        if meta.get(field) in (None, "", []):
            raise ValueError(f"{path}: front matter field '{field}' is missing or empty")
    url = str(meta["url"])
    if not url.startswith("https://"):
        raise ValueError(f"{path}: front matter field 'url' must start with https:// ({url!r})")
    as_of = _as_date(meta["as_of"], path)
    sources = meta["source"]
    sources = (sources,) if isinstance(sources, str) else tuple(str(s) for s in sources)
    body = match.group(2).strip()
    if not _HEADING.search(body):
        raise ValueError(f"{path}: body has no '## ' section")
    return Document(doc_id, str(meta["title"]).strip(), url, as_of, sources, body)


def _as_date(value: object, path: Path) -> dt.date:
    """``as_of`` as a date (YAML reads an unquoted ``2025-07-01`` as one already)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(
            f"{path}: front matter field 'as_of' must be a YYYY-MM-DD date ({value!r})"
        ) from None


def load_documents(directory: Path = KNOWLEDGE_DIR) -> list[Document]:
    """Every ``*.md`` document of a knowledge-base folder, sorted by id.

    Raises:
        ValueError: from :func:`parse_document`, or if the folder has no document.
    """
    docs = [parse_document(p) for p in sorted(Path(directory).glob("*.md"))]
    if not docs:
        raise ValueError(f"{directory}: no .md documents")
    return docs


def sections(body: str) -> list[tuple[str, str]]:
    """``(heading, text)`` of each ``##`` section; text before the first one is "Overview".

    Empty sections are dropped; ``###`` and deeper headings stay inside their section's text.
    """
    parts = _HEADING.split(body)
    out = [(OVERVIEW, parts[0].strip())]
    out += [(parts[i].strip(), parts[i + 1].strip()) for i in range(1, len(parts), 2)]
    return [(heading, text) for heading, text in out if text]


def _words(text: str) -> int:
    return len(text.split())


def _pack(units: Iterable[str], max_words: int, sep: str) -> list[str]:
    """Greedily join consecutive units with ``sep`` while a piece stays within ``max_words``."""
    pieces: list[str] = []
    for unit in units:
        if pieces and _words(pieces[-1]) + _words(unit) <= max_words:
            pieces[-1] += sep + unit
        else:
            pieces.append(unit)
    return pieces


def split_text(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """Cut a section's text into pieces of at most ``max_words`` words where possible.

    Paragraphs (blank-line separated) are kept whole and packed greedily; a paragraph longer
    than ``max_words`` is cut at line breaks (tables, lists) or else at sentence ends. A single
    sentence longer than ``max_words`` stays one piece.

    Returns:
        the pieces in order; ``[text]`` when it fits.
    """
    if _words(text) <= max_words:
        return [text]
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if _words(paragraph) <= max_words:
            units.append(paragraph)
            continue
        lines = paragraph.splitlines()
        if len(lines) > 1:
            units += _pack(lines, max_words, "\n")
        else:
            units += _pack(_SENTENCE_END.split(paragraph), max_words, " ")
    return _pack(units, max_words, "\n\n")


def slug(text: str) -> str:
    """Lower-case ascii words joined by ``-`` ("80C & 80D: limits" -> "80c-80d-limits")."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())) or "section"


def chunk_document(doc: Document, max_words: int = MAX_WORDS) -> list[Chunk]:
    """The chunks of one document, in reading order (see :func:`split_text`)."""
    chunks = []
    seen: set[str] = set()
    for heading, text in sections(doc.body):
        base = f"{doc.id}#{slug(heading)}"
        while base in seen:  # two sections with the same heading
            base += "-x"
        seen.add(base)
        for i, piece in enumerate(split_text(text, max_words)):
            chunk_id = base if i == 0 else f"{base}-{i + 1}"
            chunks.append(
                Chunk(chunk_id, doc.id, doc.title, heading, piece, doc.url, doc.as_of.isoformat())
            )
    return chunks


def load_chunks(directory: Path = KNOWLEDGE_DIR, max_words: int = MAX_WORDS) -> list[Chunk]:
    """All chunks of a knowledge-base folder, documents in id order.

    Raises:
        ValueError: see :func:`load_documents`.
    """
    return [c for doc in load_documents(directory) for c in chunk_document(doc, max_words)]
