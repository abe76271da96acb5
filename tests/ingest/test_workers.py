"""Parsing under a time limit and a memory cap: a hostile file fails alone, the rest go on."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfWriter

from ingest import workers
from ingest.document import ParsedDocument
from ingest.pipeline import sha256_of
from ingest.share_files import ShareOpener
from ingest.workers import CHANGED, Feed, ParserPool, ParseSource, parse_or_reason, tree_memory
from settings import OcrSettings
from tests.conftest import SAMPLE_SHARE

OCR = OcrSettings()
SCANNED_PDF = SAMPLE_SHARE / "finance" / "board-minutes-2026-03.pdf"
MARKDOWN = SAMPLE_SHARE / "policies" / "travel-and-expenses.md"
DOCX = SAMPLE_SHARE / "policies" / "remote-work.docx"


def checked(path: Path) -> ParseSource:
    """The file as a run checks it before parsing: its device, inode and hash."""
    root = str(path.parent)
    with ShareOpener(root) as opener, opener.open(str(path)) as opened:
        return ParseSource(str(path), root, opened.file.identity, sha256_of(opened.file.fd))


def run(pool: ParserPool, *paths: Path) -> dict[str, ParsedDocument | str]:
    sources = [checked(path) for path in paths]
    return {Path(path).name: result for path, result in pool.parse(sources)}


def text(result: ParsedDocument | str) -> str:
    assert isinstance(result, ParsedDocument), result
    return " ".join(block.text for block in result.blocks)


def test_workers_parse_like_the_parsers_do() -> None:
    pool = ParserPool(2, OCR, timeout_seconds=300, memory_mb=2048)
    results = run(pool, MARKDOWN, DOCX, SCANNED_PDF)
    for path in (MARKDOWN, DOCX, SCANNED_PDF):
        assert text(results[path.name]) == text(parse_or_reason(str(path), OCR))


def test_a_file_past_the_time_limit_fails_and_the_next_one_is_parsed(tmp_path: Path) -> None:
    long_scan = tmp_path / "long-scan.pdf"
    writer = PdfWriter()
    for _ in range(6):
        writer.append(str(SCANNED_PDF))  # 12 scanned pages: a minute of OCR or more
    writer.write(long_scan)
    pool = ParserPool(1, OCR, timeout_seconds=10, memory_mb=2048)
    started = time.monotonic()
    results = run(pool, long_scan, MARKDOWN)
    assert results[long_scan.name] == "timed out after 10s (the parser was stopped)"
    assert "EUR 28" in text(results[MARKDOWN.name])
    assert time.monotonic() - started < 45


def test_a_parser_over_the_memory_cap_is_stopped() -> None:
    # A worker holds about 540 MB once unstructured and spaCy are loaded for Markdown; the
    # PDF stack with OCR takes it near 800 MB: over a 650 MB cap.
    pool = ParserPool(1, OCR, timeout_seconds=300, memory_mb=650)
    results = run(pool, SCANNED_PDF, MARKDOWN)
    assert (
        results[SCANNED_PDF.name] == "used more than 650 MB while parsing (the parser was stopped)"
    )
    assert isinstance(results[MARKDOWN.name], ParsedDocument)


def test_a_zip_bomb_docx_fails_within_the_limits(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(DOCX) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for item in source.infolist():
            if item.filename != "word/document.xml":
                out.writestr(item, source.read(item))
        with out.open("word/document.xml", "w", force_zip64=True) as xml:
            xml.write(
                b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>'
            )
            chunk = b"A" * (1 << 20)
            for _ in range(1500):  # 1.5 GB of text, about 1.5 MB compressed
                xml.write(chunk)
            xml.write(b"</w:t></w:r></w:p></w:body></w:document>")
    assert bomb.stat().st_size < 20 * 1024 * 1024
    pool = ParserPool(1, OCR, timeout_seconds=120, memory_mb=1024)
    results = run(pool, bomb, MARKDOWN)
    assert isinstance(results["bomb.docx"], str)
    assert "the parser was stopped" in results["bomb.docx"] or "memory" in results["bomb.docx"]
    assert isinstance(results[MARKDOWN.name], ParsedDocument)


def test_a_worker_killed_from_outside_fails_its_file_only() -> None:
    pool = ParserPool(1, OCR, timeout_seconds=300, memory_mb=2048)

    def kill_the_busy_worker() -> None:
        for _ in range(100):
            busy = [w for w in pool._workers if w.source]
            if busy:
                time.sleep(0.5)
                busy[0].process.kill()
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_busy_worker)
    killer.start()
    results = run(pool, SCANNED_PDF, MARKDOWN)
    killer.join()
    assert results[SCANNED_PDF.name] == "the parser process was killed by signal 9 (out of memory?)"
    assert isinstance(results[MARKDOWN.name], ParsedDocument)


@pytest.mark.parametrize("workers", [1, 3])
def test_the_pool_handles_more_files_than_workers(workers: int, tmp_path: Path) -> None:
    paths = []
    for i in range(7):
        path = tmp_path / f"note-{i}.md"
        path.write_text(f"# Note {i}\n\nRoom {i} is booked on Fridays.\n")
        paths.append(path)
    results = run(ParserPool(workers, OCR, 60, 2048), *paths)
    assert sorted(results) == sorted(p.name for p in paths)
    assert all(f"Room {i} is booked" in text(results[f"note-{i}.md"]) for i in range(7))


def test_a_feed_gets_results_before_it_is_closed_and_a_cancel_stops_the_pool() -> None:
    feed = Feed()
    pool = ParserPool(1, OCR, timeout_seconds=300, memory_mb=2048)
    parsed = pool.parse(feed)
    feed.put(checked(MARKDOWN))
    path, result = next(parsed)  # while more files may still come
    assert path == str(MARKDOWN) and isinstance(result, ParsedDocument)
    feed.put(checked(SCANNED_PDF))
    feed.put(checked(DOCX))
    threading.Timer(0.5, feed.cancel).start()
    started = time.monotonic()
    assert list(parsed) == []  # cancelled during the OCR of the scan: nothing more comes
    assert time.monotonic() - started < 10
    assert pool._workers == []


@pytest.mark.parametrize("swap", ["a link", "another file", "other content"])
def test_a_file_that_is_no_longer_the_one_checked_is_not_parsed(swap: str, tmp_path: Path) -> None:
    note, elsewhere = tmp_path / "note.md", tmp_path / "elsewhere.md"
    note.write_text("# Note\n\nRoom 4 is booked on Fridays.\n")
    elsewhere.write_text("# Elsewhere\n\nThe salary bands are confidential.\n")
    source = checked(note)
    if swap == "a link":
        note.unlink()
        note.symlink_to(elsewhere)
    elif swap == "another file":  # even with the very same content
        shutil.copy(note, tmp_path / "copy.md")
        (tmp_path / "copy.md").rename(note)
    else:
        note.write_text("# Note\n\nRoom 5 is booked on Mondays.\n")
    scratch = tmp_path / "run"
    results = dict(ParserPool(1, OCR, 60, 2048, scratch).parse([source]))
    assert results == {str(note): CHANGED}
    assert list(scratch.iterdir()) == []


def test_a_worker_parses_a_private_copy_that_is_gone_afterwards(tmp_path: Path) -> None:
    scratch = tmp_path / "run"
    finished = subprocess.Popen(["true"])
    finished.wait()
    abandoned = scratch / f"parsing-{finished.pid}-left-by-a-killed-run"
    abandoned.mkdir(parents=True)
    (abandoned / "0.md").write_text("a copy a killed run left behind")
    pool = ParserPool(1, OCR, timeout_seconds=300, memory_mb=2048, scratch=scratch)
    seen: list[tuple[str, int, int]] = []

    def watch_the_copy() -> None:  # while the scan is read (OCR takes seconds)
        for _ in range(600):
            copies = [c for c in scratch.glob("parsing-*/*") if c.parent != abandoned]
            if copies:
                seen.extend((c.name, stat.S_IMODE(c.stat().st_mode),
                             stat.S_IMODE(c.parent.stat().st_mode)) for c in copies)  # fmt: skip
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_the_copy)
    watcher.start()
    results = run(pool, SCANNED_PDF, MARKDOWN)
    watcher.join()
    assert seen == [("0.pdf", 0o600, 0o700)]
    assert text(results[SCANNED_PDF.name]) == text(parse_or_reason(str(SCANNED_PDF), OCR))
    assert list(scratch.iterdir()) == []  # the pool's folder, and the abandoned one


FORKS_A_CHILD = """
import os, sys, time
held = bytearray(os.urandom(300 * 2**20))
if os.fork() == 0:
    time.sleep(60)
    os._exit(0)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_child_just_forked_does_not_count_its_parents_memory_twice() -> None:
    """Tesseract starts as a fork of the worker: until it execs, it shares all the worker's
    pages. Counted twice, a worker under the cap would look over it and be stopped."""
    process = subprocess.Popen([sys.executable, "-c", FORKS_A_CHILD], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        time.sleep(0.5)
        parent = tree_memory(process.pid)
        assert len(workers._tree(process.pid)) == 2
        assert 300 * 2**20 < parent < 450 * 2**20
    finally:
        workers._kill_tree(process.pid)
        process.wait()


def test_a_folder_of_an_earlier_process_with_the_same_pid_is_abandoned(tmp_path: Path) -> None:
    """A container's `rag ingest` is PID 1 after every restart: the PID alone cannot tell
    the folder a killed run left from the running one's."""
    from ingest.workers import private_folder_prefix, remove_abandoned_folders

    ours = tmp_path / f"{private_folder_prefix('spool')}current"
    earlier = tmp_path / f"spool-{os.getpid()}.1-left-by-the-process-before-a-restart"
    for folder in (ours, earlier):
        folder.mkdir()
        (folder / "copy.pdf").write_bytes(b"%PDF- a share's file")
    remove_abandoned_folders(tmp_path, "spool")
    assert sorted(tmp_path.iterdir()) == [ours]
