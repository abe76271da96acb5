"""An ingestion run against the real embedder, engine and parsers, on small shares."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ingest.errors import BadIngestRoot
from ingest.ledger import Ledger
from ingest.pipeline import Ingestor
from retrieval.access import EVERYONE, Scope
from retrieval.build import build_store
from retrieval.models import document_id
from tests.conftest import SAMPLE_SHARE, make_settings


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    (root / "policies").mkdir(parents=True)
    for name in ("travel-and-expenses.md", "information-security.md"):
        shutil.copy(SAMPLE_SHARE / "policies" / name, root / "policies" / name)
    return root


@pytest.fixture
def ingestor(tmp_path: Path, embedder: Any) -> Ingestor:
    settings = make_settings(tmp_path / "data")
    return Ingestor(settings, embedder, build_store(settings), Ledger(settings.ledger_path))


def search_paths(ingestor: Ingestor, query: str, scope: Scope | None = None) -> list[str]:
    store = ingestor._store
    vector = ingestor._embedder.embed_query(query)
    return [h.chunk.path for h in store.search(vector, scope or Scope.operator(), 10)]


def test_a_first_run_indexes_every_supported_file(share: Path, ingestor: Ingestor) -> None:
    report = ingestor.run([str(share)])
    assert (report.files_seen, report.indexed, report.failed) == (2, 2, [])
    assert report.chunks == ingestor._store.count() > 0
    assert search_paths(ingestor, "meal allowance Germany")[0].endswith("travel-and-expenses.md")


def test_a_rerun_without_changes_reads_nothing(share: Path, ingestor: Ingestor) -> None:
    ingestor.run([str(share)])
    before = ingestor._store.count()
    report = ingestor.run([str(share)])
    assert (report.unchanged, report.indexed, report.updated, report.chunks) == (2, 0, 0, 0)
    assert ingestor._store.count() == before


def test_a_changed_file_is_replaced_not_duplicated(share: Path, ingestor: Ingestor) -> None:
    ingestor.run([str(share)])
    policy = share / "policies" / "information-security.md"
    policy.write_text(
        "# Information Security Policy\n\nPasswords must be at least 20 characters.\n"
    )
    os.utime(policy, (1, 1))
    report = ingestor.run([str(share)])
    assert (report.updated, report.unchanged) == (1, 1)
    doc = document_id(str(policy))
    assert ingestor._store.count(doc) == 1
    top = ingestor._store.search(
        ingestor._embedder.embed_query("password length"), Scope.operator(), 1
    )[0]
    assert "20 characters" in top.chunk.text


def test_a_touched_but_identical_file_is_not_reparsed(share: Path, ingestor: Ingestor) -> None:
    ingestor.run([str(share)])
    os.utime(share / "policies" / "travel-and-expenses.md", (5, 5))
    report = ingestor.run([str(share)])
    assert (report.unchanged, report.updated, report.pages) == (2, 0, 0)


def test_a_deleted_file_leaves_the_index(share: Path, ingestor: Ingestor) -> None:
    ingestor.run([str(share)])
    gone = share / "policies" / "travel-and-expenses.md"
    gone.unlink()
    report = ingestor.run([str(share)])
    assert report.deleted == 1
    assert ingestor._store.count(document_id(str(gone))) == 0
    assert str(gone) not in search_paths(ingestor, "meal allowance Germany")


def test_a_bad_file_fails_alone_and_the_run_goes_on(share: Path, ingestor: Ingestor) -> None:
    (share / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (share / "empty.txt").write_text("")
    (share / "archive.bin").write_bytes(b"\0" * 10)
    report = ingestor.run([str(share)])
    assert report.indexed == 2
    assert report.skipped == 1
    failed = {Path(f.path).name: f.error for f in report.failed}
    assert set(failed) == {"broken.pdf", "empty.txt"}
    assert all(error and "\n" not in error for error in failed.values())
    record = ingestor._ledger.get(str(share / "broken.pdf"))
    assert record is not None and record.status == "failed" and record.error


def test_a_failed_file_that_gets_fixed_is_indexed_on_the_next_run(
    share: Path, ingestor: Ingestor
) -> None:
    fixed = share / "later.txt"
    fixed.write_text("")
    assert len(ingestor.run([str(share)]).failed) == 1
    fixed.write_text("The archive room is open on Tuesdays.")
    report = ingestor.run([str(share)])
    assert (report.indexed, report.failed) == (1, [])


def test_a_permission_change_updates_who_sees_the_chunks(share: Path, ingestor: Ingestor) -> None:
    policy = share / "policies" / "information-security.md"
    policy.chmod(0o644)
    ingestor.run([str(share)])
    assert str(policy) in search_paths(ingestor, "password", Scope.of({EVERYONE}))
    policy.chmod(0o600)
    report = ingestor.run([str(share)])
    assert report.unchanged == 2
    assert str(policy) not in search_paths(ingestor, "password", Scope.of({EVERYONE}))


def test_a_missing_root_is_refused_before_anything_runs(ingestor: Ingestor, tmp_path: Path) -> None:
    with pytest.raises(BadIngestRoot):
        ingestor.run([str(tmp_path / "nope")])


def test_parsing_in_worker_processes_gives_the_same_index(
    share: Path, tmp_path: Path, embedder: Any
) -> None:
    shutil.copy(SAMPLE_SHARE / "finance" / "harbour-renovation-memo.png", share)
    (share / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    indexes = []
    for workers in (1, 2):
        settings = make_settings(tmp_path / f"data-{workers}")
        store = build_store(settings)
        ingestor = Ingestor(settings, embedder, store, Ledger(settings.ledger_path))
        report = ingestor.run([str(share)], workers=workers)
        assert (report.indexed, [Path(f.path).name for f in report.failed]) == (3, ["broken.pdf"])
        hits = store.search(embedder.embed_query("budget"), Scope.operator(), 100)
        indexes.append(sorted((h.chunk.id, h.chunk.text) for h in hits))
    assert indexes[0] == indexes[1] and indexes[0]
