from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.ledger import FileRecord, Ledger, Status
from retrieval.access import Scope
from retrieval.catalog import Catalog, CatalogEntry
from retrieval.models import document_id
from retrieval.users import User


def record(
    path: str,
    acl: set[str],
    status: Status = "indexed",
    error: str | None = None,
    pages: int = 3,
    parser: str = "pdf",
) -> FileRecord:
    return FileRecord(
        path, 100, 1.0, "sha-" + path, document_id(path), frozenset(acl), status, error,
        pages=pages, chunks=7, parser=parser,
    )  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.put_many(
        [
            record("/share/finance/Budget-2026.pdf", {"group:finance"}),
            record("/share/finance/board-minutes.PDF", {"group:finance", "user:carol"}),
            record("/share/hr/salaries.xlsx", {"user:bob"}, parser="xlsx"),
            record("/share/public/handbook.docx", {"everyone"}, pages=12),
            record("/share/fin/forecast.txt", {"group:fin"}),
            record("/share/finance/broken.pdf", {"group:finance"}, "failed", error="bad xref"),
            record("/share/finance/half.pdf", {"group:finance"}, "indexing"),
            record("/share/finance/huge.iso", set(), "skipped", error="unsupported type"),
        ]
    )
    yield ledger
    ledger.close()


@pytest.fixture
def catalog(ledger: Ledger, tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "ledger.sqlite3")


def scope_of(name: str, *groups: str) -> Scope:
    return User(name, groups, admin=False).scope


def paths(entries: list[CatalogEntry]) -> list[str]:
    return [e.path for e in entries]


def test_a_user_sees_only_indexed_files_whose_acl_names_one_of_their_principals(
    catalog: Catalog,
) -> None:
    assert paths(catalog.documents(scope_of("alice", "finance"))) == [
        "/share/finance/board-minutes.PDF",
        "/share/finance/Budget-2026.pdf",
        "/share/public/handbook.docx",
    ]
    assert paths(catalog.documents(scope_of("bob"))) == [
        "/share/hr/salaries.xlsx",
        "/share/public/handbook.docx",
    ]
    assert paths(catalog.documents(scope_of("carol"))) == [
        "/share/finance/board-minutes.PDF",
        "/share/public/handbook.docx",
    ]


def test_a_group_whose_name_is_a_prefix_of_another_does_not_see_its_files(
    catalog: Catalog,
) -> None:
    seen = paths(catalog.documents(Scope.of({"group:fin"})))
    assert seen == ["/share/fin/forecast.txt"]


def test_the_empty_scope_sees_nothing_and_the_operator_sees_every_indexed_file(
    catalog: Catalog,
) -> None:
    assert catalog.documents(Scope.of(set())) == []
    assert paths(catalog.documents(Scope.operator())) == [
        "/share/fin/forecast.txt",
        "/share/finance/board-minutes.PDF",
        "/share/finance/Budget-2026.pdf",
        "/share/hr/salaries.xlsx",
        "/share/public/handbook.docx",
    ]


def test_an_entry_carries_what_the_library_page_shows(catalog: Catalog) -> None:
    before = time.time()
    (entry,) = catalog.documents(scope_of("bob"), name_contains="SALARIES")
    assert entry.folder == "/share/hr"
    assert entry.name == "salaries.xlsx"
    assert entry.file_type == "xlsx"
    assert (entry.pages, entry.chunks, entry.status, entry.parser) == (3, 7, "indexed", "xlsx")
    assert entry.doc_id == document_id("/share/hr/salaries.xlsx")
    assert before - 60 < entry.indexed_at.timestamp() <= time.time()
    assert entry.indexed_at.tzinfo is not None


def test_the_name_filter_ignores_case_and_matches_only_the_file_name(catalog: Catalog) -> None:
    alice = scope_of("alice", "finance")
    assert paths(catalog.documents(alice, "pdf")) == [
        "/share/finance/board-minutes.PDF",
        "/share/finance/Budget-2026.pdf",
    ]
    assert catalog.documents(alice, "finance") == []  # the folder's name is not the file's
    assert paths(catalog.documents(alice, "budget")) == ["/share/finance/Budget-2026.pdf"]


def test_the_name_filter_never_reveals_files_outside_the_scope(catalog: Catalog) -> None:
    assert catalog.documents(scope_of("alice", "finance"), "salaries") == []


def test_failed_files_are_listed_with_their_reasons(catalog: Catalog) -> None:
    (failed,) = catalog.failed()
    assert (failed.path, failed.status, failed.error) == (
        "/share/finance/broken.pdf",
        "failed",
        "bad xref",
    )
    both = catalog.failed(include_skipped=True)
    assert [(e.name, e.error) for e in both] == [
        ("broken.pdf", "bad xref"),
        ("huge.iso", "unsupported type"),
    ]


def test_the_catalog_sees_rows_written_after_it_was_opened(
    catalog: Catalog, ledger: Ledger
) -> None:
    ledger.put(record("/share/public/new-memo.md", {"everyone"}))
    assert "/share/public/new-memo.md" in paths(catalog.documents(scope_of("bob")))
    ledger.remove("/share/hr/salaries.xlsx")
    assert "/share/hr/salaries.xlsx" not in paths(catalog.documents(scope_of("bob")))


def test_a_missing_ledger_is_an_empty_library_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "ledger.sqlite3"
    catalog = Catalog(missing)
    assert catalog.documents(Scope.operator()) == []
    assert catalog.failed() == []
    assert not missing.exists()


def test_the_catalog_cannot_write_to_the_ledger(catalog: Catalog, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="readonly"):
        catalog._rows("DELETE FROM files", ())
    assert len(catalog.documents(Scope.operator())) == 5
