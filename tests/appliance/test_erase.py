"""Erasing a document (GDPR Art. 17) on a real share ingested with the real pipeline: nothing
the appliance keeps still holds it, and ingestion does not bring it back while unchanged."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from appliance.audit import build_audit
from appliance.conversations import ERASED_QUOTE, ConversationStore
from appliance.erase import UnknownDocument, erase
from appliance.feedback import FeedbackStore
from ingest.ledger import Ledger
from ingest.pipeline import Ingestor, IngestReport
from llm.answer import Answer, Citation
from retrieval.access import Scope
from retrieval.build import build_sparse, build_store
from retrieval.models import Hit, document_id
from retrieval.retriever import Retriever
from settings import Settings
from tests.conftest import SAMPLE_SHARE, make_settings
from ui.page_image import page_image

PROCUREMENT_QUERY = "Procurement Office extension 4230 conflict of interest Compliance Office"
TRAVEL_QUERY = "meal allowance per diem travel booking agency"


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    for relative in (
        "finance/procurement-guidelines.pdf",
        "policies/travel-and-expenses.md",
        "policies/information-security.md",
    ):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SAMPLE_SHARE / relative, root / relative)
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


def ingest(settings: Settings, embedder: Any, share: Path, **options: Any) -> IngestReport:
    ledger = Ledger(settings.ledger_path)
    store = build_store(settings)
    try:
        return Ingestor(settings, embedder, store, ledger).run([str(share)], **options)
    finally:
        store.close()
        ledger.close()


def search(settings: Settings, embedder: Any, query: str) -> list[Hit]:
    store = build_store(settings)
    retriever = Retriever(embedder, store, build_sparse(settings), None, 10)
    try:
        return retriever.search(query, Scope.operator(), 10)
    finally:
        store.close()


def count(settings: Settings, doc_id: str) -> int:
    store = build_store(settings)
    try:
        return store.count(doc_id)
    finally:
        store.close()


def ledger_of(settings: Settings) -> Ledger:
    return Ledger(settings.ledger_path)


def answered(text: str, cited: list[Hit], shown: list[Hit], origin: Any = "model") -> Answer:
    citations = [Citation(h.chunk.path, h.chunk.page, h.chunk.id) for h in cited]
    return Answer(text, False, citations, shown, origin)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    return [f for f in folder.rglob("*") if f.is_file() and needle in f.read_bytes()]


def test_an_erased_document_leaves_no_trace_and_is_not_indexed_again(
    share: Path, settings: Settings, embedder: Any
) -> None:
    assert ingest(settings, embedder, share).indexed == 3
    pdf = share / "finance" / "procurement-guidelines.pdf"
    doc_id = document_id(str(pdf))
    ledger = ledger_of(settings)
    indexed = ledger.get(str(pdf))
    ledger.close()
    assert indexed is not None and indexed.chunks == count(settings, doc_id) > 0

    # What users saw of it: passages shown and cited, an answer quoted from it, ratings.
    from_pdf = [
        h for h in search(settings, embedder, PROCUREMENT_QUERY) if h.chunk.doc_id == doc_id
    ]
    travel = [h for h in search(settings, embedder, TRAVEL_QUERY) if h.chunk.doc_id != doc_id]
    assert from_pdf and travel
    quoted_sentence = from_pdf[0].chunk.text.split("\n")[-1][:80]
    history = ConversationStore(settings.history_path)
    feedback = FeedbackStore(settings.feedback_path)
    conversation = history.create("alice", "Purchasing")
    model = answered("Ask the Procurement Office [1].", [from_pdf[0]], [from_pdf[0], travel[0]])
    quote = answered(f"\u201c{quoted_sentence}\u201d [1]", [from_pdf[0]], from_pdf[:2], "quote")
    other_quote = answered("\u201cBook through the agency.\u201d [1]", [travel[0]],
                           [travel[0], from_pdf[0]], "quote")  # fmt: skip
    history.add_turn("alice", conversation.id, "Who answers questions?", model)
    history.add_turn("alice", conversation.id, "Whom do I call?", quote)
    history.add_turn("alice", conversation.id, "How do I book?", other_quote)
    feedback.record("bob", "Whom do I call?", quote, "up")
    feedback.record("bob", "How do I book?", other_quote, "down", "too short")
    picture = page_image(pdf, 2, doc_id, settings.page_images_dir)
    assert picture is not None and picture.is_file()
    passage = from_pdf[0].chunk.text[:60].encode()
    assert files_holding(settings.data_dir, passage)

    erasure = erase(settings, path=str(pdf), by="dpo", records=[history, feedback])

    assert erasure.as_json() == {
        "doc_id": doc_id, "path": str(pdf), "chunks_removed": indexed.chunks, "remaining": 0,
        "copies": [], "records_changed": 5,
    }  # fmt: skip
    assert count(settings, doc_id) == 0
    assert all(h.chunk.doc_id != doc_id for h in search(settings, embedder, PROCUREMENT_QUERY))
    turns = history.turns("alice", conversation.id)
    assert [t.text for t in turns] == [model.text, ERASED_QUOTE, other_quote.text]
    for shown in [*turns, *feedback.list()]:
        assert all(p.doc_id != doc_id for p in shown.passages)
        assert all(c.path != str(pdf) for c in shown.citations)
    assert [f.text for f in feedback.list()] == [other_quote.text, ERASED_QUOTE]
    history.close()
    feedback.close()
    for kept in (settings.history_path, settings.feedback_path):  # not even in free pages
        assert quoted_sentence.encode() not in kept.read_bytes()
        assert from_pdf[0].chunk.text[:60].encode() not in kept.read_bytes()
    assert not (settings.page_images_dir / doc_id).exists()
    # Nor in any file of the data dir: the index's write-ahead log and old segments included.
    assert files_holding(settings.data_dir, passage) == []
    ledger = ledger_of(settings)
    row = ledger.get(str(pdf))
    assert row is not None
    assert (row.status, row.sha256, row.pages, row.chunks, row.parser, row.ocr_pages) == (
        "skipped",
        None,
        0,
        0,
        None,
        (),
    )
    assert row.error is not None and row.error.startswith("erased on ") and "by dpo" in row.error
    [tombstone] = ledger.tombstones(path=str(pdf))
    assert (tombstone.doc_id, tombstone.sha256, tombstone.erased_by) == (doc_id, sha256(pdf), "dpo")
    assert (tombstone.size, tombstone.mtime) == (pdf.stat().st_size, pdf.stat().st_mtime)
    ledger.close()
    [event] = [e for e in build_audit(settings).events() if e.action == "erase"]
    assert event.user == "dpo"
    assert event.detail == {
        "doc_id": doc_id, "path": str(pdf), "chunks_removed": indexed.chunks, "remaining": 0
    }  # fmt: skip

    # Ingestion, of any kind, does not bring it back.
    for options in ({}, {"retry_failed": True}, {"rebuild": True}):
        report = ingest(settings, embedder, share, **options)
        assert (report.skipped, report.indexed + report.updated) == (
            1,
            0 if not options.get("rebuild") else 2,
        ), options
        assert count(settings, doc_id) == 0
    ledger = ledger_of(settings)
    row = ledger.get(str(pdf))
    assert row is not None and row.status == "skipped" and row.sha256 is None
    assert row.error is not None and "not indexed again while its content is unchanged" in row.error
    assert len(ledger.tombstones()) == 1  # a rebuild clears the files, never the tombstones
    assert ledger.totals()["erased"] == 1
    ledger.close()
    assert all(h.chunk.doc_id != doc_id for h in search(settings, embedder, PROCUREMENT_QUERY))


def test_a_copy_or_a_restored_backup_of_an_erased_file_is_not_indexed(
    share: Path, settings: Settings, embedder: Any
) -> None:
    ingest(settings, embedder, share)
    travel = share / "policies" / "travel-and-expenses.md"
    erase(settings, path=str(travel))
    copy = share / "archive" / "travel-copy.md"
    copy.parent.mkdir()
    shutil.copy(travel, copy)
    backup = travel.read_bytes()
    travel.unlink()
    travel.write_bytes(backup)  # restored from a backup: same content, a new mtime
    os.utime(travel, (1_000_000, 1_000_000))

    report = ingest(settings, embedder, share)

    assert (report.indexed, report.updated, report.skipped) == (0, 0, 2)
    assert count(settings, document_id(str(copy))) == count(settings, document_id(str(travel))) == 0
    assert all(
        h.chunk.path not in (str(copy), str(travel))
        for h in search(settings, embedder, TRAVEL_QUERY)
    )
    ledger = ledger_of(settings)
    copy_row = ledger.get(str(copy))
    assert copy_row is not None and copy_row.status == "skipped" and copy_row.error is not None
    assert copy_row.error.startswith(f"same content as {travel}, erased on ")
    ledger.close()


def test_a_changed_erased_file_is_a_new_version_and_is_indexed_again(
    share: Path, settings: Settings, embedder: Any
) -> None:
    ingest(settings, embedder, share)
    travel = share / "policies" / "travel-and-expenses.md"
    erase(settings, path=str(travel))
    travel.write_text("# Travel and Expenses Policy\n\nThe daily meal allowance is now EUR 61.\n")

    report = ingest(settings, embedder, share)

    assert (report.indexed, report.skipped) == (1, 0)
    assert count(settings, document_id(str(travel))) == 1
    assert "EUR 61" in search(settings, embedder, "daily meal allowance")[0].chunk.text


def test_identical_copies_indexed_before_the_erasure_are_erased_with_it(
    share: Path, settings: Settings, embedder: Any
) -> None:
    travel = share / "policies" / "travel-and-expenses.md"
    copy = share / "archive" / "travel-copy.md"
    copy.parent.mkdir()
    shutil.copy(travel, copy)
    ingest(settings, embedder, share)
    assert count(settings, document_id(str(copy))) > 0

    result = erase(settings, doc_id=document_id(str(travel))).as_json()

    assert result["copies"] == [{"path": str(copy), "doc_id": document_id(str(copy))}]
    assert result["remaining"] == 0 and result["chunks_removed"] > 0
    assert count(settings, document_id(str(copy))) == 0
    assert all(
        h.chunk.path not in (str(copy), str(travel))
        for h in search(settings, embedder, TRAVEL_QUERY)
    )
    events = [e for e in build_audit(settings).events() if e.action == "erase"]
    assert [e.detail.get("copy_of") for e in events] == [document_id(str(travel)), None]


def test_erasing_again_completes_and_changes_nothing_more(
    share: Path, settings: Settings, embedder: Any
) -> None:
    ingest(settings, embedder, share)
    travel = share / "policies" / "travel-and-expenses.md"
    first = erase(settings, path=str(travel)).as_json()
    again = erase(settings, path=str(travel)).as_json()
    assert first["chunks_removed"] > 0
    assert (again["doc_id"], again["chunks_removed"], again["remaining"]) == (
        first["doc_id"], 0, 0
    )  # fmt: skip
    ledger = ledger_of(settings)
    assert len(ledger.tombstones()) == 1
    ledger.close()


def test_erasing_a_path_that_a_link_now_takes_does_not_tombstone_the_link_s_target(
    share: Path, settings: Settings, embedder: Any
) -> None:
    ingest(settings, embedder, share)
    security = share / "policies" / "information-security.md"
    travel = share / "policies" / "travel-and-expenses.md"
    security.unlink()
    security.symlink_to(travel.name)
    erase(settings, path=str(security))
    ledger = ledger_of(settings)
    assert sha256(travel) not in [t.sha256 for t in ledger.tombstones()]
    ledger.close()
    report = ingest(settings, embedder, share)
    assert report.failed == [] and report.unchanged == 2  # travel is not taken for a copy
    assert count(settings, document_id(str(travel))) > 0


def test_an_unknown_document_says_where_to_find_the_path(
    share: Path, settings: Settings, embedder: Any
) -> None:
    ingest(settings, embedder, share)
    with pytest.raises(UnknownDocument, match="Library") as raised:
        erase(settings, path=str(share / "nope.pdf"))
    assert "\n" not in str(raised.value)
    with pytest.raises(UnknownDocument):
        erase(settings, doc_id=document_id("/elsewhere/file.pdf"))
    assert count(settings, document_id(str(share / "policies" / "travel-and-expenses.md"))) > 0
