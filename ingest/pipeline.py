"""One ingestion run: crawl the roots, bring the index and the ledger in line with the files."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from ingest.chunker import passages
from ingest.crawler import crawl, storable
from ingest.document import ParsedDocument
from ingest.errors import BadIngestRoot
from ingest.ledger import FileRecord, Ledger
from ingest.parsers import parser_for
from ingest.permissions import principals_from_stat
from ingest.workers import ParserPool
from retrieval.embedder import Embedder
from retrieval.models import Chunk, chunk_id, document_id
from retrieval.store import VectorStore
from settings import Settings


@dataclass
class Failure:
    path: str
    error: str


@dataclass
class IngestReport:
    files_seen: int = 0
    indexed: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: list[Failure] = field(default_factory=list)
    pages: int = 0
    chunks: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "files_seen": self.files_seen,
            "indexed": self.indexed,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "failed": [{"path": f.path, "error": f.error} for f in self.failed],
            "pages": self.pages,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
        }


class Progress(Protocol):
    def start(self, total_files: int) -> None: ...

    def advance(self, path: str, pages: int, chunks: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def start(self, total_files: int) -> None:
        pass

    def advance(self, path: str, pages: int, chunks: int) -> None:
        pass

    def finish(self) -> None:
        pass


def check_roots(roots: Sequence[str]) -> list[str]:
    """Absolute paths of the roots, as given (symlinks not resolved); each must exist."""
    checked = []
    for root in roots:
        absolute = os.path.abspath(root)
        if not os.path.exists(absolute):
            raise BadIngestRoot(f"{root}: no such file or folder")
        if not (os.path.isdir(absolute) or os.path.isfile(absolute)):
            raise BadIngestRoot(f"{root}: not a regular file or folder")
        checked.append(absolute)
    return checked


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ParseJob:
    """A file whose content is new or changed: it must be parsed."""

    path: str
    size: int
    mtime: float
    sha256: str
    doc_id: str
    acl: frozenset[str]
    previous: FileRecord | None


class Ingestor:
    def __init__(
        self, settings: Settings, embedder: Embedder, store: VectorStore, ledger: Ledger
    ) -> None:
        self._settings = settings
        self._embedder = embedder
        self._store = store
        self._ledger = ledger

    def run(
        self, roots: Sequence[str], progress: Progress | None = None, workers: int | None = None
    ) -> IngestReport:
        """Sync the index with the files under the roots, parsing (and OCR) in `workers`
        processes side by side (default: the setting, or one per core)."""
        progress = progress or NoProgress()
        started = time.monotonic()
        report = IngestReport()
        absolute_roots = check_roots(roots)
        self._store.ensure_collection(self._embedder.dimension)
        files: dict[str, None] = {}
        links_and_specials: list[str] = []
        protected: list[str] = []  # folders we could not list: what they held is kept
        for root in absolute_roots:
            crawled = crawl(root)
            files.update(dict.fromkeys(crawled.files))
            for path, reason in crawled.skipped:
                self._skip(path, reason, report)
                links_and_specials.append(path)
            for folder, reason in crawled.unreadable_folders:
                report.failed.append(Failure(folder, reason))
                protected.append(folder.rstrip("/") + "/")
        seen = {storable(path) for path in [*files, *links_and_specials]}
        report.files_seen = len(files)
        progress.start(len(files))
        jobs = []
        for path in files:
            job = self._plan(path, report, seen)
            if job is None:
                progress.advance(path, 0, 0)
            else:
                jobs.append(job)
        workers = workers or self._settings.ingest.workers or os.cpu_count() or 1
        for job, result in self._parse_all(jobs, workers):
            chunks_before = report.chunks
            pages = self._apply(job, result, report)
            progress.advance(job.path, pages, report.chunks - chunks_before)
        for root in absolute_roots:
            for path in list(self._ledger.paths_under(root)):
                if path not in seen and not path.startswith(tuple(protected)):
                    self._forget(path)
                    report.deleted += 1
        progress.finish()
        report.seconds = time.monotonic() - started
        return report

    def _skip(self, path: str, reason: str, report: IngestReport) -> None:
        shown = storable(path)
        try:
            st = os.lstat(path)
            size, mtime = st.st_size, st.st_mtime
        except OSError:
            size, mtime = 0, 0.0
        previous = self._ledger.get(shown)
        if previous is not None and previous.status != "skipped":
            self._store.delete_document(previous.doc_id)
        self._ledger.put(
            FileRecord(shown, size, mtime, None, document_id(shown), frozenset(), "skipped", reason)
        )
        report.skipped += 1

    def _plan(self, path: str, report: IngestReport, seen: set[str]) -> ParseJob | None:
        """Settle a file that needs no parsing (unchanged, unsupported, unreadable, gone);
        or return the job of parsing it."""
        shown = storable(path)
        if shown != path:
            reason = "file name is not valid UTF-8; rename the file to index it"
            self._ledger.put(FileRecord(shown, 0, 0.0, None, document_id(shown), frozenset(),
                                        "failed", reason))  # fmt: skip
            report.failed.append(Failure(shown, reason))
            return None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            seen.discard(path)  # vanished during the run: it counts as deleted
            report.files_seen -= 1
            return None
        except OSError as exc:
            report.failed.append(Failure(path, f"cannot stat: {exc.strerror}"))
            return None
        acl = principals_from_stat(st)
        doc_id = document_id(path)
        previous = self._ledger.get(path)
        if parser_for(Path(path)) is None:
            self._skip(path, f"unsupported file type {Path(path).suffix or '(none)'}", report)
            return None
        indexed = previous is not None and previous.status == "indexed"
        if indexed and previous and (previous.size, previous.mtime) == (st.st_size, st.st_mtime):
            self._refresh_acl(previous, acl)
            report.unchanged += 1
            return None
        try:
            sha = sha256_of(path)
        except FileNotFoundError:
            seen.discard(path)
            report.files_seen -= 1
            return None
        except OSError as exc:
            report.failed.append(Failure(path, f"cannot read: {exc.strerror}"))
            return None
        if indexed and previous and previous.sha256 == sha:
            self._ledger.put(replace(previous, size=st.st_size, mtime=st.st_mtime))
            self._refresh_acl(previous, acl)
            report.unchanged += 1
            return None
        job = ParseJob(path, st.st_size, st.st_mtime, sha, doc_id, acl, previous)
        if self._reuse_identical(job, report):
            return None
        return job

    def _reuse_identical(self, job: ParseJob, report: IngestReport) -> bool:
        """A file whose content is already indexed elsewhere (a moved file, a copy) takes
        that file's chunks and vectors under its own path: no parsing, OCR or embedding."""
        donor = self._ledger.indexed_with_content(job.sha256, other_than=job.path)
        if donor is None:
            return False
        found = self._store.document_chunks(donor.doc_id)
        if len(found) != donor.chunks or not found:
            return False  # the donor's chunks are incomplete: parse this file instead
        chunks = [
            chunk.model_copy(
                update={
                    "id": chunk_id(job.doc_id, chunk.ordinal),
                    "doc_id": job.doc_id,
                    "path": job.path,
                    "acl": job.acl,
                    "mtime": job.mtime,
                }
            )
            for chunk, _ in found
        ]
        self._write(job, chunks, [vector for _, vector in found], donor.pages, donor.parser,
                    donor.ocr_pages, report)  # fmt: skip
        return True

    def _parse_all(
        self, jobs: list[ParseJob], workers: int
    ) -> Iterator[tuple[ParseJob, ParsedDocument | str]]:
        if not jobs:
            return
        by_path = {job.path: job for job in jobs}
        pool = ParserPool(
            min(workers, len(jobs)),
            self._settings.ocr,
            self._settings.ingest.file_timeout_seconds,
            self._settings.ingest.worker_memory_mb,
        )
        for path, result in pool.parse(by_path):
            yield by_path[path], result

    def _apply(self, job: ParseJob, result: ParsedDocument | str, report: IngestReport) -> int:
        """Write a parsed file's chunks, or record why it failed; returns its pages."""
        if isinstance(result, str):
            return self._fail(job, result, report)
        chunks = self._chunks(job, result)
        if not chunks:
            self._store.delete_document(job.doc_id)
            self._fail(job, "no text found (empty document, or a scan OCR could not read)", report)
            return result.pages
        vectors = self._embedder.embed_documents([c.embedding_text() for c in chunks])
        self._write(job, chunks, vectors, result.pages, result.parser, result.ocr_pages, report)
        report.pages += result.pages
        return result.pages

    def _write(
        self,
        job: ParseJob,
        chunks: list[Chunk],
        vectors: Sequence[Sequence[float]],
        pages: int,
        parser: str | None,
        ocr_pages: Sequence[int],
        report: IngestReport,
    ) -> None:
        # Marked before the index is touched: a run killed from here on leaves a row that the
        # next run re-parses, or cleans up when the file is gone, never orphaned chunks.
        self._ledger.put(
            FileRecord(job.path, job.size, job.mtime, job.sha256, job.doc_id, job.acl,
                       "indexing")
        )  # fmt: skip
        self._store.replace_document(job.doc_id, chunks, vectors)
        self._ledger.put(
            FileRecord(
                job.path, job.size, job.mtime, job.sha256, job.doc_id, job.acl, "indexed",
                None, pages, len(chunks), parser, tuple(ocr_pages),
            )
        )  # fmt: skip
        if job.previous and job.previous.status == "indexed":
            report.updated += 1
        else:
            report.indexed += 1
        report.chunks += len(chunks)

    def _fail(self, job: ParseJob, reason: str, report: IngestReport) -> int:
        self._ledger.put(
            FileRecord(
                job.path, job.size, job.mtime, job.sha256, job.doc_id, job.acl, "failed", reason
            )
        )
        report.failed.append(Failure(job.path, reason))
        return 0

    def _chunks(self, job: ParseJob, document: ParsedDocument) -> list[Chunk]:
        title = document.title(Path(job.path).stem.replace("-", " ").replace("_", " "))
        return [
            Chunk(
                id=chunk_id(job.doc_id, ordinal),
                doc_id=job.doc_id,
                ordinal=ordinal,
                text=passage.text,
                path=job.path,
                page=passage.page,
                title=title,
                section=passage.section,
                content_sha256=job.sha256,
                acl=job.acl,
                mtime=job.mtime,
            )
            for ordinal, passage in enumerate(
                passages(document, title, self._settings.chunking.max_chars)
            )
        ]

    def _refresh_acl(self, previous: FileRecord, acl: frozenset[str]) -> None:
        if previous.acl != acl:
            self._store.set_acl(previous.doc_id, acl)
            self._ledger.put(replace(previous, acl=acl))

    def _forget(self, path: str) -> None:
        record = self._ledger.get(path)
        if record is not None:
            self._store.delete_document(record.doc_id)
        self._ledger.remove(path)
