"""The evaluation corpus: generated in full, every golden answer found where it is said to be."""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from docx import Document
from pypdf import PdfReader

from ops.tools.make_eval_corpus import SCAN_FORMATS, Rendered, build_corpus, main

SCANS = {".png", ".tiff"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval")
    assert main([str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered]:
    return build_corpus()[0]


@pytest.fixture(scope="module")
def golden(corpus: Path) -> list[dict[str, Any]]:
    lines = (corpus / "golden.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def page_texts(path: Path, document: Rendered) -> list[str]:
    """The text of each page as written to the file; for scans, the text that was rendered."""
    if document.source.fmt in SCAN_FORMATS:
        return list(document.pages)
    data = path.read_bytes()
    suffix = path.suffix
    if suffix == ".pdf":
        return [page.extract_text() for page in PdfReader(path).pages]
    if suffix == ".docx":
        word = Document(str(path))
        cells = [cell.text for table in word.tables for row in table.rows for cell in row.cells]
        return ["\n".join([p.text for p in word.paragraphs] + cells)]
    if suffix == ".html":
        return [html.unescape(re.sub(r"<[^>]+>", " ", data.decode()))]
    if suffix == ".eml":
        message = email.message_from_bytes(data, policy=email.policy.default)
        body = message.get_body()
        assert body is not None
        return [str(message["Subject"]) + "\n" + body.get_content()]
    return [data.decode()]


def test_counts_languages_and_formats(corpus: Path, rendered: dict[str, Rendered]) -> None:
    files = [p for p in (corpus / "documents").rglob("*") if p.is_file()]
    assert len(files) == len(rendered) >= 150
    languages = Counter(document.source.lang for document in rendered.values())
    assert set(languages) == {"en", "fr", "de"}
    assert min(languages.values()) >= 20
    formats = Counter(document.source.fmt for document in rendered.values())
    for fmt in ("md", "txt", "html", "docx", "pdf", "scan-pdf", "png", "tiff", "eml", "csv"):
        assert formats[fmt] >= 1, fmt
    assert sum(formats[fmt] for fmt in SCAN_FORMATS) >= 10
    assert any(len(d.pages) > 1 for d in rendered.values() if d.source.fmt == "pdf")


def test_question_counts(golden: list[dict[str, Any]]) -> None:
    assert len(golden) >= 80
    assert len({q["id"] for q in golden}) == len(golden)
    unanswerable = [q for q in golden if q.get("unanswerable")]
    assert len(unanswerable) >= 15
    assert {q["language"] for q in unanswerable} == {"en", "fr", "de"}
    answerable = Counter(q["language"] for q in golden if not q.get("unanswerable"))
    assert answerable["en"] >= 45 and answerable["fr"] >= 10 and answerable["de"] >= 10


def test_the_questions_are_split_in_halves_per_language_and_answerability(
    golden: list[dict[str, Any]],
) -> None:
    strata: dict[tuple[str, bool], Counter[str]] = {}
    for question in golden:
        key = (question["language"], bool(question.get("unanswerable")))
        strata.setdefault(key, Counter())[question["split"]] += 1
    for key, splits in strata.items():
        assert set(splits) <= {"dev", "test"}, key
        assert abs(splits["dev"] - splits["test"]) <= 1, (key, splits)
    for question in golden:
        if not question.get("unanswerable"):
            assert question["document_language"] in ("en", "fr", "de"), question["id"]


def test_every_answer_is_in_its_source_on_its_page(
    corpus: Path, rendered: dict[str, Rendered], golden: list[dict[str, Any]]
) -> None:
    for question in golden:
        if question.get("unanswerable"):
            assert "source" not in question and "facts" not in question
            continue
        source = question["source"]
        path = corpus / "documents" / source["path"]
        assert path.is_file(), question["id"]
        pages = page_texts(path, rendered[source["path"]])
        paged = path.suffix == ".pdf" or (path.suffix in SCANS and len(pages) > 1)
        assert ("page" in source) == paged, question["id"]
        text = pages[source["page"] - 1] if paged else "\n".join(pages)
        for fact in question["facts"]:
            assert normalise(fact) in normalise(text), (question["id"], fact)


def test_generation_is_deterministic(corpus: Path, rendered: dict[str, Rendered]) -> None:
    """Two generations (the written corpus, the one in memory) give the same bytes."""
    mtimes = set()
    for path, document in rendered.items():
        written = corpus / "documents" / path
        assert written.read_bytes() == document.data, path
        mtimes.add(written.stat().st_mtime)
    assert len(mtimes) > 1 and max(mtimes) < 1.8e9
