"""An ingestion run against the real embedder, engine and parsers, on small shares."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ingest import pipeline
from ingest.crawler import CrawlResult
from ingest.errors import BadIngestRoot
from ingest.ledger import Ledger
from ingest.pipeline import Ingestor
from retrieval.access import EVERYONE, Scope
from retrieval.build import build_store
from retrieval.errors import StoreUnavailable
from retrieval.models import Hit, document_id
from retrieval.store import SearchFilters, SearchQuery
from tests.conftest import RAG, SAMPLE_SHARE, make_settings


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


def search(ingestor: Ingestor, query: str, k: int, scope: Scope | None = None) -> list[Hit]:
    vector = ingestor._embedder.embed_query(query)
    return ingestor._store.search(SearchQuery(query, vector), scope or Scope.operator(), k)


def search_paths(ingestor: Ingestor, query: str, scope: Scope | None = None) -> list[str]:
    return [h.chunk.path for h in search(ingestor, query, 10, scope)]


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
    top = search(ingestor, "password length", 1)[0]
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
    assert report.report_file is not None
    saved = json.loads(Path(report.report_file).read_text())
    assert {Path(f["path"]).name: f["error"] for f in saved["failed"]} == failed
    assert saved["roots"] == [str(share)] and saved["indexed"] == 2


def test_a_failed_file_that_gets_fixed_is_indexed_on_the_next_run(
    share: Path, ingestor: Ingestor
) -> None:
    fixed = share / "later.txt"
    fixed.write_text("")
    assert len(ingestor.run([str(share)]).failed) == 1
    fixed.write_text("The archive room is open on Tuesdays.")
    report = ingestor.run([str(share)])
    assert (report.indexed, report.failed) == (1, [])


def test_an_unchanged_failed_file_is_tried_again_only_when_asked(
    share: Path, ingestor: Ingestor
) -> None:
    broken = share / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    assert [Path(f.path).name for f in ingestor.run([str(share)]).failed] == ["broken.pdf"]
    again = ingestor.run([str(share)])
    assert (again.failed, again.still_failed, again.unchanged) == ([], 1, 3)
    record = ingestor._ledger.get(str(broken))
    assert record is not None and record.status == "failed"
    retried = ingestor.run([str(share)], retry_failed=True)
    assert [Path(f.path).name for f in retried.failed] == ["broken.pdf"]
    assert retried.still_failed == 0


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
        query = SearchQuery("budget", embedder.embed_query("budget"))
        hits = store.search(query, Scope.operator(), 100)
        indexes.append(sorted((h.chunk.id, h.chunk.text) for h in hits))
    assert indexes[0] == indexes[1] and indexes[0]


def test_links_are_recorded_as_skipped_with_their_reason(
    share: Path, ingestor: Ingestor, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.md"
    outside.write_text("# Elsewhere\n\nNot part of this share.\n")
    (share / "escape.md").symlink_to(outside)
    report = ingestor.run([str(share)])
    assert report.skipped == 1
    record = ingestor._ledger.get(str(share / "escape.md"))
    assert record is not None and record.status == "skipped"
    assert record.error is not None and "outside the ingest root" in record.error
    assert str(outside) not in search_paths(ingestor, "Not part of this share")


def test_a_file_that_vanishes_during_the_run_counts_as_deleted(
    share: Path, ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor.run([str(share)])
    doomed = share / "policies" / "travel-and-expenses.md"
    real_crawl = pipeline.crawl

    def crawl_then_lose_a_file(root: str) -> CrawlResult:
        result = real_crawl(root)
        doomed.unlink()  # gone between the walk and the read
        return result

    monkeypatch.setattr(pipeline, "crawl", crawl_then_lose_a_file)
    report = ingestor.run([str(share)])
    assert (report.files_seen, report.deleted, report.failed) == (1, 1, [])
    assert ingestor._store.count(document_id(str(doomed))) == 0


def test_odd_names_are_indexed_and_a_name_that_is_not_utf8_fails_with_a_reason(
    share: Path, ingestor: Ingestor
) -> None:
    (share / "line\nbreak.md").write_text("# Odd\n\nThe cellar key hangs by the door.\n")
    (share / "Übersicht – naïve 日本.md").write_text(
        "# Übersicht\n\nDie Kantine öffnet um 11:30.\n"
    )
    raw = os.path.join(os.fsencode(share), b"caf\xe9.md")
    Path(os.fsdecode(raw)).write_text("# Cafe\n\nCoffee is free.\n")
    report = ingestor.run([str(share)])
    assert report.indexed == 4
    (failure,) = report.failed
    assert failure.path == str(share) + "/caf\\xe9.md"
    assert failure.error == "file name is not valid UTF-8; rename the file to index it"
    json.dumps(report.as_json(), ensure_ascii=False).encode("utf-8")
    again = ingestor.run([str(share)])
    assert (again.unchanged, again.deleted, again.failed, again.still_failed) == (5, 0, [], 1)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop file-permission override")
def test_files_in_a_folder_that_becomes_unreadable_stay_indexed(
    share: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path / "cli-data")
    command = [str(RAG), "ingest", str(share), "--workers", "1", "--json"]
    first = json.loads(subprocess.run(command, env=env, capture_output=True, check=True).stdout)
    (share / "policies").chmod(0o000)
    try:
        second = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command],
            env=env,
            capture_output=True,
            check=True,
        )
    finally:
        (share / "policies").chmod(0o755)
    report = json.loads(second.stdout)
    assert report["deleted"] == 0
    assert report["failed"] == [
        {"path": str(share / "policies"), "error": "cannot list folder: Permission denied"}
    ]
    status = subprocess.run([str(RAG), "status", "--json"], env=env, capture_output=True)
    assert json.loads(status.stdout)["documents"] == first["indexed"] == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop file-permission override")
def test_a_file_the_ingest_account_cannot_open_leaves_the_index_until_it_can(
    share: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path / "cli-data")
    command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
               str(RAG), "ingest", str(share), "--workers", "1", "--json"]  # fmt: skip

    def ingest() -> Any:
        done = subprocess.run(command, env=env, capture_output=True, check=True)
        return json.loads(done.stdout)

    def documents() -> int:
        status = subprocess.run([str(RAG), "status", "--json"], env=env, capture_output=True)
        return int(json.loads(status.stdout)["documents"])

    assert ingest()["indexed"] == 2
    policy = share / "policies" / "travel-and-expenses.md"
    policy.chmod(0o000)
    try:
        report = ingest()
    finally:
        policy.chmod(0o644)
    assert report["failed"] == [{"path": str(policy), "error": (
        "permissions unreadable: cannot open the file (Permission denied); "
        "let the ingest account read them, then run rag ingest again"
    )}]  # fmt: skip
    assert documents() == 1
    again = ingest()  # tried again although it did not change
    assert (again["indexed"], again["failed"], documents()) == (1, [], 2)


def test_a_moved_file_is_recognised_by_its_content_and_not_parsed_again(
    share: Path, ingestor: Ingestor
) -> None:
    ingestor.run([str(share)])
    old = share / "policies" / "travel-and-expenses.md"
    new = share / "archive" / "2026" / "travel.md"
    new.parent.mkdir(parents=True)
    old.rename(new)
    report = ingestor.run([str(share)])
    assert (report.indexed, report.deleted, report.pages, report.unchanged) == (1, 1, 0, 1)
    hits = search(ingestor, "meal allowance Germany", 3)
    assert hits[0].chunk.path == str(new)
    assert hits[0].chunk.doc_id == document_id(str(new))
    assert ingestor._store.count(document_id(str(old))) == 0


def test_a_copy_takes_the_chunks_of_the_original(share: Path, ingestor: Ingestor) -> None:
    ingestor.run([str(share)])
    original = share / "policies" / "information-security.md"
    copy = share / "copy-of-security.md"
    shutil.copy(original, copy)
    report = ingestor.run([str(share)])
    assert (report.indexed, report.pages, report.deleted) == (1, 0, 0)
    assert ingestor._store.count(document_id(str(copy))) == ingestor._store.count(
        document_id(str(original))
    )


def test_an_email_and_each_attachment_are_found_and_cited_apart(
    share: Path, ingestor: Ingestor
) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = "Crane contract"
    message.set_content("The signed crane contract is attached for your files.\n")
    message.add_attachment(
        (SAMPLE_SHARE / "finance" / "procurement-guidelines.pdf").read_bytes(),
        "application", "pdf", filename="guidelines.pdf",
    )  # fmt: skip
    message.add_attachment(b"MZ", "application", "octet-stream", filename="viewer.exe")
    mail = share / "mail" / "crane.eml"
    mail.parent.mkdir()
    mail.write_bytes(message.as_bytes())

    report = ingestor.run([str(share)])
    assert (report.indexed, report.failed) == (3, [])
    assert [(Path(w.path).name, w.note) for w in report.warnings] == [
        ("crane.eml", "attachment 'viewer.exe' skipped: unsupported file type .exe")
    ]
    chunks = [chunk for chunk, _ in ingestor._store.document_chunks(document_id(str(mail)))]
    assert {c.attachment for c in chunks} == {"", "guidelines.pdf"}
    assert all(c.path == str(mail) for c in chunks)
    from_pdf = [c for c in chunks if c.attachment]
    assert from_pdf[0].title.startswith("Procurement Guidelines")
    assert {c.page for c in from_pdf} <= {1, 2}
    hits = search(ingestor, "purchases above which amount need three quotes", 1)
    assert hits[0].chunk.attachment == "guidelines.pdf"
    record = ingestor._ledger.get(str(mail))
    assert record is not None and record.status == "indexed"
    assert record.error == "attachment 'viewer.exe' skipped: unsupported file type .exe"
    assert record.pages == 1 + 2


def test_passages_carry_their_language_and_find_by_filter(
    tmp_path: Path, ingestor: Ingestor
) -> None:
    share = tmp_path / "mixed"
    (share / "fr").mkdir(parents=True)
    (share / "fr" / "conges.md").write_text(
        "# Congés annuels\n\nLes salariés ont droit à vingt-cinq jours de congés par an. "
        "La demande est faite dans le portail des ressources humaines au moins un mois avant.\n"
    )
    (share / "leave.md").write_text(
        "# Annual leave\n\nEmployees are entitled to twenty-five days of leave per year. "
        "The request is made in the human resources portal at least a month before.\n"
    )
    ingestor.run([str(share)])
    languages = {
        Path(c.path).name: c.language
        for path in ("fr/conges.md", "leave.md")
        for c, _ in ingestor._store.document_chunks(document_id(str(share / path)))
    }
    assert languages == {"conges.md": "fr", "leave.md": "en"}
    vector = ingestor._embedder.embed_query("congés")
    french = ingestor._store.search(
        SearchQuery("congés", vector), Scope.operator(), 5, SearchFilters(language="fr")
    )
    assert [Path(h.chunk.path).name for h in french] == ["conges.md"]


def test_an_index_from_before_keyword_search_asks_for_a_rebuild(
    share: Path, tmp_path: Path, embedder: Any
) -> None:
    import qdrant_edge as qe

    settings = make_settings(tmp_path / "data")
    old = settings.index_dir / settings.qdrant.collection
    config = qe.EdgeConfig(
        vectors={"dense": qe.EdgeVectorParams(size=embedder.dimension, distance=qe.Distance.Cosine)}
    )
    qe.EdgeShard.create(str(old), config).close()
    ingestor = Ingestor(settings, embedder, build_store(settings), Ledger(settings.ledger_path))
    with pytest.raises(StoreUnavailable, match="rag ingest --rebuild"):
        ingestor.run([str(share)])
    report = ingestor.run([str(share)], rebuild=True)
    assert report.indexed == 2 and report.failed == []
    assert search_paths(ingestor, "meal allowance Germany")[0].endswith("travel-and-expenses.md")
    again = ingestor.run([str(share)], rebuild=True)
    assert (again.indexed, ingestor._store.count()) == (2, report.chunks)
