"""The advisor's knowledge base: front-matter validation, chunking rules, the shipped documents."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from finbento.advisor import knowledge
from finbento.advisor.knowledge import (
    KNOWLEDGE_DIR,
    MAX_WORDS,
    REQUIRED_FIELDS,
    chunk_document,
    load_chunks,
    load_documents,
    parse_document,
    sections,
    split_text,
)
from finbento.advisor.retrieval import QUESTIONS_PATH, load_questions

FRONT = {
    "title": "Test topic",
    "url": "https://www.example.gov.in/",
    "as_of": "2025-12-31",
    "source": "Example source",
}
TOPICS = (
    "ppf", "epf", "nps", "elss", "sukanya-samriddhi-yojana", "fixed-deposits", "recurring-deposits",
    "sip-mutual-funds", "section-80c", "section-80d", "section-24b-home-loan-interest",
    "new-tax-regime", "old-vs-new-tax-regime", "emergency-fund", "term-insurance",
    "health-insurance", "credit-score",
)  # fmt: skip
BODY = "Intro text.\n\n## First section\n\nSome facts.\n\n## Second section\n\nMore facts.\n"


def write_doc(directory: Path, name: str = "test-topic", body: str = BODY, **fields) -> Path:
    meta = {**FRONT, **fields}
    lines = [f"{k}: {v}" for k, v in meta.items() if v is not None]
    path = directory / f"{name}.md"
    path.write_text("---\n" + "\n".join(lines) + "\n---\n\n" + body, encoding="utf-8")
    return path


# --- front matter -------------------------------------------------------------------------------


def test_a_valid_document_is_parsed(tmp_path):
    doc = parse_document(write_doc(tmp_path, source="[Act one, Circular two]"))
    assert doc.id == "test-topic"
    assert doc.title == "Test topic"
    assert doc.as_of == dt.date(2025, 12, 31)
    assert doc.sources == ("Act one", "Circular two")
    assert doc.body.startswith("Intro text.")


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_a_missing_field_names_the_file_and_the_field(tmp_path, field):
    path = write_doc(tmp_path, **{field: None})
    with pytest.raises(ValueError, match=rf"test-topic\.md.*'{field}'"):
        parse_document(path)


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_an_empty_field_is_rejected(tmp_path, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        parse_document(write_doc(tmp_path, **{field: '""'}))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "http://www.example.gov.in/"}, "'url' must start with https://"),
        ({"as_of": "Q4 FY 2025-26"}, "'as_of' must be a YYYY-MM-DD date"),
        ({"as_of": "2025-13-01"}, "invalid front matter: month must be in 1..12"),
        ({"title": "[unclosed"}, "invalid front matter"),
    ],
)
def test_bad_field_values_are_rejected(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        parse_document(write_doc(tmp_path, **fields))


def test_a_document_without_front_matter_is_rejected(tmp_path):
    path = tmp_path / "topic.md"
    path.write_text("# Title\n\n## Section\n\ntext\n")
    with pytest.raises(ValueError, match=r"topic\.md: no YAML front matter"):
        parse_document(path)


def test_front_matter_must_be_a_mapping(tmp_path):
    path = tmp_path / "topic.md"
    path.write_text("---\n- a\n- b\n---\n\n## Section\n\ntext\n")
    with pytest.raises(ValueError, match="mapping"):
        parse_document(path)


def test_a_body_without_sections_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no '## ' section"):
        parse_document(write_doc(tmp_path, body="Just one paragraph.\n"))


@pytest.mark.parametrize("name", ["Test_Topic", "topic ppf", "-ppf"])
def test_file_names_must_be_lower_case_slugs(tmp_path, name):
    with pytest.raises(ValueError, match="file name"):
        parse_document(write_doc(tmp_path, name=name))


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"no \.md documents"):
        load_documents(tmp_path)


# --- chunking -----------------------------------------------------------------------------------


def test_sections_split_on_level_two_headings_only():
    body = "Intro.\n\n## A\n\ntext a\n\n### A detail\n\nmore a\n\n## B\n\ntext b\n\n## Empty\n"
    assert sections(body) == [
        ("Overview", "Intro."),
        ("A", "text a\n\n### A detail\n\nmore a"),
        ("B", "text b"),
    ]


def test_no_overview_chunk_without_intro_text():
    assert [h for h, _ in sections("## A\n\ntext")] == ["A"]


def test_a_short_section_stays_whole():
    text = "one two three.\n\nfour five."
    assert split_text(text, max_words=10) == [text]


def test_a_long_section_is_split_at_paragraphs_within_the_limit():
    paragraphs = [" ".join(f"p{i}w{j}" for j in range(40)) for i in range(5)]
    pieces = split_text("\n\n".join(paragraphs), max_words=100)
    assert pieces == ["\n\n".join(paragraphs[0:2]), "\n\n".join(paragraphs[2:4]), paragraphs[4]]
    assert all(len(p.split()) <= 100 for p in pieces)


def test_an_over_long_paragraph_is_split_at_sentences_and_table_rows():
    sentence = " ".join(["word"] * 30) + "."
    pieces = split_text(" ".join([sentence] * 6), max_words=60)
    assert len(pieces) == 3 and all(len(p.split()) == 60 for p in pieces)
    table = "\n".join(["| a | b |", "|---|---|"] + [f"| row {i} | {'x ' * 20}|" for i in range(8)])
    pieces = split_text(table, max_words=60)
    assert len(pieces) > 1 and all(len(p.split()) <= 60 for p in pieces)
    assert "\n".join(pieces) == table


def test_chunks_carry_their_document_and_prepend_the_title(tmp_path):
    doc = parse_document(write_doc(tmp_path))
    chunks = chunk_document(doc)
    assert [c.id for c in chunks] == [
        "test-topic#overview", "test-topic#first-section", "test-topic#second-section",
    ]  # fmt: skip
    first = chunks[1]
    assert (first.doc_id, first.section) == ("test-topic", "First section")
    assert first.text == "Some facts."
    assert (first.url, first.as_of) == (FRONT["url"], "2025-12-31")
    assert first.embedding_text() == "Test topic - First section: Some facts."


def test_parts_and_repeated_headings_get_unique_ids(tmp_path):
    long = "\n\n".join(" ".join(["w"] * 50) for _ in range(3))
    body = f"## Rates\n\n{long}\n\n## Rates\n\nagain\n"
    chunks = chunk_document(parse_document(write_doc(tmp_path, body=body)), max_words=100)
    ids = [c.id for c in chunks]
    assert ids == ["test-topic#rates", "test-topic#rates-2", "test-topic#rates-x"]


# --- the shipped knowledge base -----------------------------------------------------------------


@pytest.fixture(scope="module")
def docs():
    return load_documents()


@pytest.fixture(scope="module")
def chunks():
    return load_chunks()


def test_the_knowledge_base_covers_the_topics(docs):
    ids = {d.id for d in docs}
    assert 15 <= len(docs) <= 20
    assert set(TOPICS) <= ids


def test_every_document_names_an_official_source_and_a_date(docs):
    for d in docs:
        assert d.url.startswith("https://"), d.id
        assert dt.date(2025, 1, 1) <= d.as_of <= dt.date.today(), d.id
        assert d.sources and all(s.strip() for s in d.sources), d.id
        assert 300 <= len(d.body.split()) <= 800, d.id


def test_quarterly_rates_say_which_quarter(docs):
    for d in docs:
        if d.id in ("ppf", "sukanya-samriddhi-yojana", "recurring-deposits",
                    "post-office-savings-schemes"):  # fmt: skip
            assert "as of the January–March 2026 quarter" in " ".join(d.body.split()), d.id


def test_key_limits_are_stated(docs):
    text = {d.id: " ".join(d.body.split()) for d in docs}
    assert "₹1.5 lakh" in text["section-80c"] and "₹1.5 lakh" in text["ppf"]
    assert "₹25,000" in text["section-80d"] and "₹50,000" in text["section-80d"]
    assert "₹2 lakh" in text["section-24b-home-loan-interest"]
    assert "₹50,000" in text["nps"] and "80CCD(1B)" in text["nps"]
    assert "₹75,000" in text["new-tax-regime"] and "₹12 lakh" in text["new-tax-regime"]


def test_chunks_are_short_unique_and_complete(docs, chunks):
    assert len({c.id for c in chunks}) == len(chunks)
    assert {c.doc_id for c in chunks} == {d.id for d in docs}
    for c in chunks:
        assert c.text.strip() and len(c.text.split()) <= MAX_WORDS, c.id
        assert c.url and c.as_of, c.id


def test_every_question_points_to_an_existing_document(docs):
    questions = load_questions()
    ids = {d.id for d in docs}
    assert 60 <= len(questions) <= 80
    assert len({q.question.lower() for q in questions}) == len(questions)
    assert [q for q in questions if q.doc_id not in ids] == []
    assert {q.doc_id for q in questions} == ids  # every document is asked about


def test_questions_file_must_have_its_columns(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("query,doc\nhow much,ppf\n")
    with pytest.raises(ValueError, match="columns"):
        load_questions(path)
    path.write_text("question,doc_id\nhow much,\n")
    with pytest.raises(ValueError, match="line 2"):
        load_questions(path)


def test_default_paths_point_at_the_shipped_data():
    assert KNOWLEDGE_DIR.is_dir() and QUESTIONS_PATH.is_file()
    assert KNOWLEDGE_DIR.parent == knowledge.DATA_DIR
