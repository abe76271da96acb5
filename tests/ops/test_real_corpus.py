"""The real-document evaluation corpus: built from the installed Debian packages, in three
languages and many formats, with questions split into dev and test halves."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from ops.evaluate import load_golden
from ops.tools.make_eval_corpus import SCAN_FORMATS, CorpusError, Rendered
from ops.tools.make_real_corpus import (
    DATA_DIR,
    build_corpus,
    compact,
    main,
    manual_body,
    place_answer,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real")
    assert main([str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered]:
    return build_corpus()[0]


@pytest.fixture(scope="module")
def golden(corpus: Path) -> list[dict[str, Any]]:
    lines = (corpus / "golden.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def sources(question: dict[str, Any]) -> list[dict[str, Any]]:
    return question.get("sources") or [question["source"]]


def test_documents_in_three_languages_and_many_formats(
    corpus: Path, rendered: dict[str, Rendered]
) -> None:
    files = sorted(p for p in (corpus / "documents").rglob("*") if p.is_file())
    assert len(files) == len(rendered) >= 20
    languages = Counter(document.source.lang for document in rendered.values())
    assert set(languages) == {"en", "fr", "de"} and min(languages.values()) >= 5
    formats = Counter(document.source.fmt for document in rendered.values())
    for fmt in ("pdf", "docx", "html", "md", "txt"):
        assert formats[fmt] >= 2, fmt
    assert sum(formats[fmt] for fmt in SCAN_FORMATS) >= 3
    real_pdf = PdfReader(corpus / "documents" / "faq" / "debian-faq.pdf")
    assert len(real_pdf.pages) > 50  # the package's own multi-page PDF, copied as it is


def test_the_golden_file_is_valid_and_shaped_as_the_issue_asks(
    corpus: Path, golden: list[dict[str, Any]]
) -> None:
    assert len(load_golden(corpus / "golden.jsonl")) == len(golden)
    assert 60 <= len(golden) <= 100
    unanswerable = [q for q in golden if q.get("unanswerable")]
    assert 0.10 <= len(unanswerable) / len(golden) <= 0.20
    answerable = [q for q in golden if not q.get("unanswerable")]
    crossing = [q for q in answerable if q["language"] != q["document_language"]]
    assert 0.20 <= len(crossing) / len(golden) <= 0.30
    assert {q["language"] for q in crossing} == {"fr", "de"}
    for language in ("fr", "de"):
        own = [q for q in answerable if q["language"] == q["document_language"] == language]
        assert len(own) >= 10, language


def test_splits_are_halves_of_each_stratum(golden: list[dict[str, Any]]) -> None:
    strata: dict[tuple[str, str | None], Counter[str]] = {}
    for question in golden:
        key = (question["language"], question.get("document_language"))
        strata.setdefault(key, Counter())[question["split"]] += 1
    for key, splits in strata.items():
        assert set(splits) <= {"dev", "test"}, key
        assert abs(splits["dev"] - splits["test"]) <= 1, (key, splits)


def test_every_answer_is_placed_in_a_written_document(
    corpus: Path, rendered: dict[str, Rendered], golden: list[dict[str, Any]]
) -> None:
    for question in golden:
        if question.get("unanswerable"):
            assert "source" not in question and "sources" not in question
            continue
        assert "evidence" not in question
        for source in sources(question):
            document = rendered[source["path"]]
            assert (corpus / "documents" / source["path"]).is_file()
            if "page" in source:
                text = document.pages[source["page"] - 1]
            else:
                assert len(document.pages) == 1, question["id"]
                text = document.pages[0]
            for fact in question.get("facts", []):
                assert compact(fact) in compact(text), (question["id"], fact)


def test_a_manual_page_becomes_headings_paragraphs_and_bullets() -> None:
    typeset = "\n".join(
        [
            "SHELLS(5)            File Formats Manual            SHELLS(5)",
            "",
            "NAME",
            "       shells - pathnames of valid login shells",
            "",
            "DESCRIPTION",
            "       /etc/shells is a text file",
            "       listing   valid shells.",
            "",
            "   Fields",
            "       •   the first field",
            "",
            "Linux                     2022-10-30                     SHELLS(5)",
        ]
    )
    title, body = manual_body(typeset)
    assert title == "SHELLS(5) \u2013 pathnames of valid login shells"
    assert body.splitlines() == [
        f"# {title}", "", "## NAME", "", "shells - pathnames of valid login shells", "",
        "## DESCRIPTION", "", "/etc/shells is a text file listing valid shells.", "",
        "## Fields", "", "- the first field",
    ]  # fmt: skip


def test_facts_missing_from_their_source_stop_the_build(rendered: dict[str, Rendered]) -> None:
    question = {"id": "x", "source": {"path": "manuals/de/hosts.txt"}, "facts": ["Quokka"]}
    with pytest.raises(CorpusError, match="question x: .*Quokka.* not on one page"):
        place_answer(question, rendered)


def test_every_package_read_is_named_in_the_notes_and_installed_by_setup() -> None:
    entries = json.loads((DATA_DIR / "documents.json").read_text(encoding="utf-8"))
    readme = (DATA_DIR / "README.md").read_text(encoding="utf-8")
    setup = (Path(__file__).resolve().parents[2] / "ops" / "setup.sh").read_text()
    for package in {entry["package"] for entry in entries}:
        assert package in readme and f" {package}" in setup, package
