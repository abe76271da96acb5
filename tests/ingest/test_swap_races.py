"""Files and folders swapped while a run reads the share: a link, another file, a FIFO or the
appliance's own data folder never lends its content to a path whose permissions were read
elsewhere.

Each swap is injected at the one moment it targets (right after the real crawl returns, or
right before a checked file is handed to the real parser workers); the rest of the run is
real: real files, owners and modes, real parsers, embedder and index. The HR folder belongs
to an account other than the run's (a uid without a name: `uid:54321`), mode 0700, and its
file is 0644: only the folder keeps others out, as on most shares.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from appliance.conversations import ConversationStore
from appliance.users import UserDirectory
from ingest import pipeline
from ingest.crawler import CrawlResult
from ingest.ledger import Ledger
from ingest.pipeline import Ingestor, ParseJob
from retrieval.access import EVERYONE, Scope
from retrieval.build import build_store
from retrieval.store import SearchQuery
from settings import Settings
from tests.conftest import SAMPLE_SHARE, make_settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (files of another owner)")

HR_OWNER = 54321
PUBLIC_TEXT = "The canteen serves lunch from noon until two."
HR_TEXT = "The disciplinary hearing of the night porter concluded with a final warning."
OUTSIDER = Scope.of({EVERYONE, "user:outsider"})  # may read public/, not hr/
CHANGED = "changed while being read"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def ingestor(settings: Settings, embedder: Any) -> Iterator[Ingestor]:
    ledger = Ledger(settings.ledger_path)
    yield Ingestor(settings, embedder, build_store(settings), ledger)
    ledger.close()


@pytest.fixture
def share(tmp_path: Path) -> Path:
    """share/public/notes.md, open to everyone; share/hr/case.md, in a folder only its owner
    may enter; share/hr/inner/notes.md, one level further in."""
    root = tmp_path / "share"
    public, hr = root / "public", root / "hr"
    public.mkdir(parents=True)
    (hr / "inner").mkdir(parents=True)
    (public / "notes.md").write_text(f"# Notes\n\n{PUBLIC_TEXT}\n")
    (hr / "case.md").write_text(f"# Case\n\n{HR_TEXT}\n")
    (hr / "inner" / "notes.md").write_text(f"# Inner notes\n\n{HR_TEXT}\n")
    for path in (root, public, public / "notes.md"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    for path in (hr / "case.md", hr / "inner" / "notes.md", hr / "inner", hr):
        os.chown(path, HR_OWNER, HR_OWNER)
        path.chmod(0o644 if path.is_file() else 0o755)
    hr.chmod(0o700)
    return root


def swap_after_crawl(monkeypatch: pytest.MonkeyPatch, swap: Callable[[], None]) -> None:
    """The swap happens between the real crawl and the planning of the files it found."""
    real_crawl = pipeline.crawl

    def crawl_then_swap(root: str) -> CrawlResult:
        result = real_crawl(root)
        swap()
        return result

    monkeypatch.setattr(pipeline, "crawl", crawl_then_swap)


def swap_before_parsing(
    monkeypatch: pytest.MonkeyPatch, victim: Path, swap: Callable[[], None]
) -> None:
    """The swap happens after the run checked `victim` (permissions, hash) and before the
    parser workers get it."""
    real_submit = pipeline.BackgroundParsing.submit

    def swap_then_submit(self: Any, job: ParseJob) -> None:
        if job.path == str(victim):
            swap()
        real_submit(self, job)

    monkeypatch.setattr(pipeline.BackgroundParsing, "submit", swap_then_submit)


def link(path: Path, target: Path | str) -> Callable[[], None]:
    def replace_by_link() -> None:
        path.unlink()
        path.symlink_to(target)

    return replace_by_link


def texts_found(ingestor: Ingestor, query: str, scope: Scope) -> list[str]:
    vector = ingestor._embedder.embed_query(query)
    hits = ingestor._store.search(SearchQuery(query, vector), scope, 50)
    return [hit.chunk.text for hit in hits]


def hr_text_leaks_to_outsider(ingestor: Ingestor) -> bool:
    return any("disciplinary" in text for text in texts_found(ingestor, HR_TEXT, OUTSIDER))


def test_symlink_swapped_in_after_crawl_does_not_index_hr_text_with_the_public_acl(
    share: Path, ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = share / "public" / "notes.md"
    swap_after_crawl(monkeypatch, link(notes, "../hr/case.md"))
    report = ingestor.run([str(share)], workers=1)
    assert not hr_text_leaks_to_outsider(ingestor)
    record = ingestor._ledger.get(str(notes))
    assert record is not None and EVERYONE not in record.acl and record.status == "failed"
    assert record.error is not None and record.error.startswith(CHANGED)
    assert "symbolic link" in record.error
    assert [f.path for f in report.failed] == [str(notes)]
    case = ingestor._ledger.get(str(share / "hr" / "case.md"))  # indexed where it lives
    assert case is not None and case.status == "indexed"
    assert case.acl == frozenset({f"uid:{HR_OWNER}"})


def test_an_indexed_file_swapped_for_a_link_keeps_its_last_good_version_until_the_next_run(
    share: Path, ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = share / "public" / "notes.md"
    ingestor.run([str(share)], workers=1)
    before = ingestor._ledger.get(str(notes))
    swap_after_crawl(monkeypatch, link(notes, "../hr/case.md"))
    report = ingestor.run([str(share)], workers=1)
    assert not hr_text_leaks_to_outsider(ingestor)
    assert [f.path for f in report.failed] == [str(notes)]
    assert report.failed[0].error.startswith(CHANGED)
    assert ingestor._ledger.get(str(notes)) == before  # untouched, tried again next run
    assert any(PUBLIC_TEXT in text for text in texts_found(ingestor, PUBLIC_TEXT, OUTSIDER))
    monkeypatch.undo()
    again = ingestor.run([str(share)], workers=1)
    assert again.failed == [] and again.skipped == 1  # the link, now seen by the crawl
    assert not any(PUBLIC_TEXT in text for text in texts_found(ingestor, PUBLIC_TEXT, OUTSIDER))
    assert not hr_text_leaks_to_outsider(ingestor)


@pytest.mark.parametrize("database", ["conversations", "users"])
def test_symlink_swapped_in_after_crawl_does_not_index_the_appliance_s_databases(
    database: str,
    share: Path,
    settings: Settings,
    ingestor: Ingestor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "ragswap-zoe"  # a user name, or the words of a user's conversation
    if database == "conversations":
        store = ConversationStore(settings.history_path)
        store.create("alice", "Treatment options for ragswap-zoe burnout leave")
        store.close()
        target = settings.history_path
    else:
        users = UserDirectory(settings.users_path)
        users.add(secret, "a-long-password", ["ward-7"])
        users.close()
        target = settings.users_path
    notes = share / "public" / "notes.md"
    swap_after_crawl(monkeypatch, link(notes, target))
    ingestor.run([str(share)], workers=1)
    everything = texts_found(ingestor, f"{secret} burnout ward password", Scope.operator())
    assert everything and not any(secret in text for text in everything)
    record = ingestor._ledger.get(str(notes))
    assert record is not None and record.status == "failed" and record.acl == frozenset()


def test_a_data_folder_inside_an_ingest_root_is_never_indexed(
    tmp_path: Path, embedder: Any
) -> None:
    root = tmp_path / "share"
    settings = make_settings(root / "rag-data")
    page_images = settings.page_images_dir
    page_images.mkdir(parents=True)  # a rendered page of a restricted PDF, cached
    shutil.copy(SAMPLE_SHARE / "finance" / "harbour-renovation-memo.png", page_images / "p1.png")
    (root / "notes.md").write_text(f"# Notes\n\n{PUBLIC_TEXT}\n")
    conversations = ConversationStore(settings.history_path)
    conversations.create("alice", "Treatment options for ragswap-zoe burnout leave")
    conversations.close()
    ledger = Ledger(settings.ledger_path)
    ingestor = Ingestor(settings, embedder, build_store(settings), ledger)
    report = ingestor.run([str(root)], workers=1)
    assert report.indexed == 1 and report.failed == []
    inside = [p for p in ledger.paths_under(str(settings.data_dir))]
    assert str(page_images / "p1.png") in inside and str(settings.history_path) in inside
    for path in inside:
        record = ledger.get(path)
        assert record is not None and record.status == "skipped", path
        assert record.error == "inside the appliance's data folder (never indexed)", path
    everything = texts_found(ingestor, "harbour renovation budget", Scope.operator())
    assert all(PUBLIC_TEXT in text for text in everything)
    ledger.close()


def test_a_folder_swapped_for_a_link_after_the_crawl_does_not_lend_its_traverse_rights(
    share: Path, ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    public = share / "public"

    def swap_the_folder() -> None:
        public.rename(share.parent / "public-moved-away")
        public.symlink_to("hr/inner")  # hr/inner/notes.md: only hr/ itself keeps others out

    swap_after_crawl(monkeypatch, swap_the_folder)
    report = ingestor.run([str(share)], workers=1)
    assert not hr_text_leaks_to_outsider(ingestor)
    record = ingestor._ledger.get(str(public / "notes.md"))
    assert record is not None and EVERYONE not in record.acl and record.status == "failed"
    assert record.error is not None and record.error.startswith(CHANGED)
    assert f"folder {public}" in record.error
    assert str(public / "notes.md") in [f.path for f in report.failed]
    inner = ingestor._ledger.get(str(share / "hr" / "inner" / "notes.md"))
    assert inner is not None and inner.acl == frozenset({f"uid:{HR_OWNER}"})


def test_symlink_swapped_in_between_the_check_and_the_parser_is_not_parsed(
    share: Path, ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = share / "public" / "notes.md"
    swap_before_parsing(monkeypatch, notes, link(notes, "../hr/case.md"))
    report = ingestor.run([str(share)], workers=1)
    assert not hr_text_leaks_to_outsider(ingestor)
    assert {f.path: f.error for f in report.failed} == {
        str(notes): "changed while being read; run rag ingest again"
    }
    record = ingestor._ledger.get(str(notes))
    assert record is not None and record.status == "failed"
    monkeypatch.undo()
    again = ingestor.run([str(share)], workers=1)  # the link is seen by the crawl now
    assert again.failed == [] and not hr_text_leaks_to_outsider(ingestor)


def test_a_file_rewritten_between_the_check_and_the_parser_is_not_indexed_under_the_old_hash(
    share: Path, ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = share / "public" / "notes.md"
    stat = notes.stat()

    def rewrite_in_place() -> None:  # the same file, size and times; other words
        rewritten = "# Notes\n\nThe canteen is closed for good."
        notes.write_text(rewritten.ljust(stat.st_size - 1) + "\n")
        os.utime(notes, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    swap_before_parsing(monkeypatch, notes, rewrite_in_place)
    report = ingestor.run([str(share)], workers=1)
    assert {f.path: f.error for f in report.failed} == {
        str(notes): "changed while being read; run rag ingest again"
    }
    monkeypatch.undo()
    again = ingestor.run([str(share)], workers=1)  # tried again although size and mtime agree
    assert again.failed == [] and again.indexed == 1
    assert any("closed for good" in t for t in texts_found(ingestor, "canteen", OUTSIDER))


def test_a_fifo_swapped_in_after_the_crawl_does_not_hang_the_run(
    share: Path, ingestor: Ingestor, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = share / "public" / "notes.md"

    def replace_by_fifo() -> None:
        notes.unlink()
        os.mkfifo(notes)

    class Hung(Exception):  # not an OSError, which the run would take for a read error
        pass

    def hung(signum: int, frame: FrameType | None) -> None:
        raise Hung("the run hangs on the FIFO")

    swap_after_crawl(monkeypatch, replace_by_fifo)
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        report = ingestor.run([str(share)], workers=1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [f.path for f in report.failed] == [str(notes)]
    assert report.failed[0].error.startswith(CHANGED)
    assert "not a regular file" in report.failed[0].error
