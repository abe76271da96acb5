"""One ingestion run: crawl the roots, bring the index and the ledger in line with the files.

Each file is opened once, after the crawl, without following links and only if it is still the
object the crawl listed (`ingest.share_files`); its permissions, its hash and what the parser
reads all come from that one object. A file that changed in between (a link, a FIFO or another
file took its place, or a folder above it was swapped) is not read this run: it is reported
with the reason, what the ledger and the index held for it stays as it was, and the next run
tries it again. Nothing in the appliance's own data folder is indexed, even under a root that
holds it.

A root is a local path (a folder, a file, a mounted share) or an SMB share read over the
protocol (`smb://server/share/folder`, `ingest.smb`); either gives the run a `Share`, which
crawls and opens its files, and each file opened is a `SourceFile`, which says what the run
needs to know of it. Everything else (the ledger, incremental runs, identical-content reuse,
deletions and moves) is the same for both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from ingest.background import BackgroundParsing
from ingest.chunker import passages
from ingest.context import (
    Profile,
    context_of,
    folder_of,
    profile,
    refresh_folders,
    series_names,
    series_of,
)
from ingest.crawler import CrawlResult, crawl, storable
from ingest.document import ParsedDocument
from ingest.errors import BadIngestRoot
from ingest.ledger import FileRecord, Ledger, Status, erasure_note
from ingest.parsers import parser_for
from ingest.permissions import UNREADABLE_PERMISSIONS, ShareAccess, UnreadablePermissions
from ingest.run_reports import save_run_report
from ingest.share_files import (
    CHANGED_WHILE_READ,
    FileChanged,
    Identity,
    InsideDataFolder,
    OpenedFile,
    ShareOpener,
)
from ingest.smb import ShareLost, SmbShare, Spool, is_smb_url, parse_url
from ingest.workers import ParseResult, ParserPool, ParseSource
from retrieval.embedder import Embedder
from retrieval.errors import IndexModelMismatch
from retrieval.language import detect_language
from retrieval.models import Chunk, chunk_id, document_id
from retrieval.store import DocumentVersion, VectorStore
from settings import Settings


@dataclass
class Failure:
    path: str
    error: str


@dataclass
class FileNote:
    """Something inside an indexed file that could not be read (an attachment...)."""

    path: str
    note: str


@dataclass
class IngestReport:
    files_seen: int = 0
    indexed: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: list[Failure] = field(default_factory=list)
    warnings: list[FileNote] = field(default_factory=list)
    still_failed: int = 0  # unchanged files that failed in an earlier run, not tried again
    pages: int = 0
    chunks: int = 0
    seconds: float = 0.0
    report_file: str | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "files_seen": self.files_seen,
            "indexed": self.indexed,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "skipped": self.skipped,
            "failed": [{"path": f.path, "error": f.error} for f in self.failed],
            "warnings": [{"path": w.path, "warning": w.note} for w in self.warnings],
            "still_failed": self.still_failed,
            "pages": self.pages,
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
            "report_file": self.report_file,
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
    """Absolute paths of the roots, as given (symlinks not resolved); each must exist. An
    `smb://` root is checked for its form only (the run connects to it), and written the way
    the ledger stores it."""
    checked = []
    for root in roots:
        if is_smb_url(root):
            checked.append(parse_url(root).url)
            continue
        absolute = os.path.abspath(root)
        if not os.path.exists(absolute):
            raise BadIngestRoot(
                f"{root}: no such file or folder; give a folder or file that exists"
            )
        if not (os.path.isdir(absolute) or os.path.isfile(absolute)):
            raise BadIngestRoot(f"{root}: not a regular file or folder")
        checked.append(absolute)
    return checked


def sha256_of(fd: int) -> str:
    """The SHA-256 of the content of a file just opened (read from where its handle stands)."""
    with open(fd, "rb", buffering=0, closefd=False) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


_SPOOLED_PER_WORKER = 8


class SourceFile(Protocol):
    """A file of an ingest root, opened once for the run: all the run knows of the file comes
    from it. Closing it closes the file, and drops any copy of its content it fetched unless
    `keep_content()` was called (the parsers then read that copy, and remove it)."""

    @property
    def size(self) -> int: ...

    @property
    def mtime(self) -> float: ...

    def readers(self) -> frozenset[str]:
        """The file's ACL. Raises UnreadablePermissions, or OSError when the file cannot be
        read this run."""
        ...

    def content_sha256(self) -> str:
        """Raises OSError."""
        ...

    def parse_source(self, sha256: str) -> ParseSource: ...

    def keep_content(self) -> None: ...

    def close(self) -> None: ...


class Share(Protocol):
    """Where the files under one ingest root come from, for one run."""

    @property
    def root(self) -> str: ...

    def crawl(self) -> CrawlResult: ...

    def open(self, path: str) -> SourceFile:
        """Raises FileNotFoundError (gone), InsideDataFolder, FileChanged, ShareLost, and
        OSError (a PermissionError: who may read the file cannot be known)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _LocalFile:
    """A file opened under a local root (`ingest.share_files`)."""

    opened: OpenedFile
    access: ShareAccess
    root: str

    @property
    def size(self) -> int:
        return self.opened.file.st.st_size

    @property
    def mtime(self) -> float:
        return self.opened.file.st.st_mtime

    def readers(self) -> frozenset[str]:
        return self.access.readers(self.opened)

    def content_sha256(self) -> str:
        return sha256_of(self.opened.file.fd)

    def parse_source(self, sha256: str) -> ParseSource:
        return ParseSource(self.opened.file.path, self.root, self.opened.file.identity, sha256)

    def keep_content(self) -> None:
        pass  # the parsers open the file themselves

    def close(self) -> None:
        self.opened.close()


class _LocalShare:
    """A local root: crawled by `ingest.crawler`, its files opened by `ShareOpener` and their
    permissions read by `ShareAccess`."""

    def __init__(
        self, root: str, identities: dict[str, Identity], data_dir: Path, access: ShareAccess
    ) -> None:
        """`identities`: what the run's crawls saw, filled in before the first file opens."""
        self.root = root
        self._identities = identities
        self._data_dir = data_dir
        self._access = access
        self._opener: ShareOpener | None = None

    def crawl(self) -> CrawlResult:
        return crawl(self.root)

    def open(self, path: str) -> _LocalFile:
        if self._opener is None:
            self._opener = ShareOpener(self.root, self._identities, self._data_dir)
        return _LocalFile(self._opener.open(path), self._access, self.root)

    def close(self) -> None:
        if self._opener is not None:
            self._opener.close()


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
    source: ParseSource  # the content whose permissions and hash were checked


@dataclass(frozen=True)
class _Ready:
    """A file's chunks, ready to write: with vectors when reused, None when still to embed."""

    job: ParseJob
    chunks: list[Chunk]
    vectors: list[list[float]] | None
    pages: int
    parser: str | None
    ocr_pages: Sequence[int]
    notes: Sequence[str]
    parsed: bool  # False: reused from an identical file, no pages were read
    profile: str  # what the document says it is (`ingest.context.Profile`, JSON)
    context: str  # the document context its chunks hold

    def record(self, status: Status) -> FileRecord:
        job = self.job
        if status != "indexed":
            return FileRecord(job.path, job.size, job.mtime, job.sha256, job.doc_id, job.acl,
                              status)  # fmt: skip
        return FileRecord(
            job.path, job.size, job.mtime, job.sha256, job.doc_id, job.acl, status,
            "; ".join(self.notes) or None, self.pages, len(self.chunks), self.parser,
            tuple(self.ocr_pages), self.profile, self.context,
        )  # fmt: skip


class _WriteBatch:
    """Files waiting to be embedded and written together: written when the batch holds
    `max_chunks` chunks or has waited `_MAX_WAIT_SECONDS`, so progress never stalls long."""

    _MAX_WAIT_SECONDS = 10.0

    def __init__(self, max_chunks: int) -> None:
        self._max_chunks = max_chunks
        self._documents: list[_Ready] = []
        self._chunks = 0
        self._since = 0.0

    def add(self, ready: _Ready) -> None:
        if not self._documents:
            self._since = time.monotonic()
        self._documents.append(ready)
        self._chunks += len(ready.chunks)

    def due(self) -> bool:
        if not self._documents:
            return False
        waited = time.monotonic() - self._since
        return self._chunks >= self._max_chunks or waited >= self._MAX_WAIT_SECONDS

    def take(self) -> list[_Ready]:
        documents, self._documents, self._chunks = self._documents, [], 0
        return documents


def _parts(
    document: ParsedDocument, file_name: str, attachment: str = ""
) -> Iterator[tuple[str, str, ParsedDocument]]:
    """(attachment name, title, document) of a document and, depth first, its attachments;
    an attachment of an attachment is named `outer.eml / inner.pdf`."""
    yield (
        attachment,
        document.title(Path(file_name).stem.replace("-", " ").replace("_", " ")),
        document,
    )
    for inner in document.attachments:
        name = f"{attachment} / {inner.name}" if attachment else inner.name
        yield from _parts(inner.document, inner.name, name)


def _retried_every_run(previous: FileRecord | None) -> bool:
    """Whether the file failed for a reason that is gone once someone fixes it elsewhere
    (permissions that could not be read, a file that changed while it was read)."""
    return previous is not None and (previous.error or "").startswith(
        (UNREADABLE_PERMISSIONS, CHANGED_WHILE_READ)
    )


class Ingestor:
    def __init__(
        self, settings: Settings, embedder: Embedder, store: VectorStore, ledger: Ledger
    ) -> None:
        self._settings = settings
        self._embedder = embedder
        self._store = store
        self._ledger = ledger
        self._access = ShareAccess(settings.access.sid_map)
        # Folders where a file was indexed, changed or removed this run: their files'
        # document contexts are brought up to date at the end of the run.
        self._touched: set[str] = set()
        # Roots of shares lost during the run: why, and how many files were not read.
        self._not_read: dict[str, tuple[str, int]] = {}

    def _check_index_model(self) -> None:
        """Refuses to add vectors of another model to the index; names the model of a new
        index (or of one built before indexes named theirs)."""
        configured = self._embedder.model_id
        recorded = self._ledger.index_model()
        if recorded is None:
            self._ledger.record_index_model(configured)
        elif recorded != configured:
            raise IndexModelMismatch(recorded, configured)

    def run(
        self,
        roots: Sequence[str],
        progress: Progress | None = None,
        workers: int | None = None,
        retry_failed: bool = False,
        rebuild: bool = False,
    ) -> IngestReport:
        """Sync the index with the files under the roots, parsing (and OCR) in `workers`
        processes side by side (default: the setting, or one per core). A file that failed
        before and has not changed since stays failed unless `retry_failed`. `rebuild` first
        drops the whole index and the ledger, so every file is read again (after an upgrade
        that changes how passages are indexed)."""
        started = time.monotonic()
        absolute_roots = check_roots(roots)
        # Folders' permissions are read once per run.
        self._access = ShareAccess(self._settings.access.sid_map)
        identities: dict[str, Identity] = {}  # path: the device and inode the crawl saw
        spool = Spool(self._settings.run_dir)
        shares: dict[str, Share] = {}
        try:
            for root in absolute_roots:  # an SMB share that cannot be used stops the run here
                shares[root] = self._share(root, identities, spool)
            report = self._sync(shares, identities, progress or NoProgress(), workers,
                                retry_failed, rebuild)  # fmt: skip
        finally:
            for share in shares.values():
                share.close()
            spool.remove()
        report.seconds = time.monotonic() - started
        report.report_file = str(
            save_run_report(self._settings.ingest_reports_dir, report.as_json(), absolute_roots)
        )
        return report

    def _share(self, root: str, identities: dict[str, Identity], spool: Spool) -> Share:
        if not is_smb_url(root):
            return _LocalShare(root, identities, self._settings.data_dir, self._access)
        share = SmbShare(root, self._settings.smb, self._settings.access.sid_map, spool)
        share.connect()
        return share

    def _sync(
        self,
        shares: dict[str, Share],
        identities: dict[str, Identity],
        progress: Progress,
        workers: int | None,
        retry_failed: bool,
        rebuild: bool,
    ) -> IngestReport:
        report = IngestReport()
        if rebuild:
            self._store.drop()
            self._ledger.clear()
        self._check_index_model()
        self._store.ensure_collection(self._embedder.dimension)
        files: dict[str, str] = {}  # path: the outermost root it was found under
        links_and_specials: list[str] = []
        protected: list[str] = []  # folders we could not list: what they held is kept
        for root, share in shares.items():
            crawled = share.crawl()
            identities.update(crawled.identities)
            for path in crawled.files:
                if len(files.get(path, root)) >= len(root):
                    files[path] = root
            for path, reason in crawled.skipped:
                self._skip(path, reason, report)
                links_and_specials.append(path)
            for folder, reason in crawled.unreadable_folders:
                report.failed.append(Failure(folder, reason))
                protected.append(folder.rstrip("/") + "/")
        seen = {storable(path) for path in [*files, *links_and_specials]}
        report.files_seen = len(files)
        progress.start(len(files))
        batch = _WriteBatch(self._settings.ingest.batch_chunks)
        workers = workers or self._settings.ingest.workers or os.cpu_count() or 1
        # Parsing starts with the first file that needs it, while the rest are still checked.
        parsing: BackgroundParsing[ParseJob] = BackgroundParsing(
            ParserPool(workers, self._settings.ocr, self._settings.ingest.file_timeout_seconds,
                       self._settings.ingest.worker_memory_mb, self._settings.run_dir),
            workers,
        )  # fmt: skip
        self._not_read = {}
        try:
            for path, root in files.items():
                if isinstance(shares[root], SmbShare):
                    # Downloads run ahead of the parsers, but the spool holds only a few
                    # files for each of them.
                    while parsing.waiting >= _SPOOLED_PER_WORKER * workers:
                        self._take(parsing.ready(wait=1.0), batch, report, progress)
                planned = self._plan(path, shares[root], report, seen, retry_failed)
                if isinstance(planned, ParseJob):
                    parsing.submit(planned)
                elif isinstance(planned, _Ready):
                    batch.add(planned)
                else:
                    progress.advance(path, 0, 0)
                self._take(parsing.ready(wait=0.0), batch, report, progress)
            for share in shares.values():
                share.close()
            parsing.done_submitting()
            while not parsing.finished:
                self._take(parsing.ready(wait=1.0), batch, report, progress)
        finally:
            parsing.close()
        self._flush(batch, report, progress)
        for root, (reason, count) in self._not_read.items():
            report.failed.append(Failure(root, f"{reason}; files not read this run: {count} "
                                               "(the index keeps what it held for them); run "
                                               "rag ingest again"))  # fmt: skip
        for root in shares:
            for path in list(self._ledger.paths_under(root)):
                if path not in seen and not path.startswith(tuple(protected)):
                    self._forget(path)
                    report.deleted += 1
        touched, self._touched = self._touched, set()
        refresh_folders(touched, self._ledger, self._store, self._embedder.embed_documents)
        if report.indexed or report.updated or report.deleted:
            self._store.optimize()
        progress.finish()
        return report

    def _skip(self, path: str, reason: str, report: IngestReport) -> None:
        shown = storable(path)
        size, mtime = 0, 0.0
        if not is_smb_url(path):
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                size, mtime = st.st_size, st.st_mtime
        previous = self._ledger.get(shown)
        if previous is not None and previous.status != "skipped":
            self._store.delete_document(previous.doc_id)
            self._touched.add(folder_of(shown))
        self._ledger.put(
            FileRecord(shown, size, mtime, None, document_id(shown), frozenset(), "skipped", reason)
        )
        report.skipped += 1

    def _plan(
        self,
        path: str,
        share: Share,
        report: IngestReport,
        seen: set[str],
        retry_failed: bool,
    ) -> ParseJob | _Ready | None:
        """Settle a file that needs no parsing (unchanged, unsupported, unreadable, gone,
        changed since the crawl); or return the chunks of an identical indexed file; or the
        job of parsing it."""
        shown = storable(path)
        if shown != path:
            reason = "file name is not valid UTF-8; rename the file to index it"
            previous = self._ledger.get(shown)
            if previous is not None and previous.error == reason and not retry_failed:
                self._settle_unchanged(previous, previous.acl, report)
                return None
            self._ledger.put(FileRecord(shown, 0, 0.0, None, document_id(shown), frozenset(),
                                        "failed", reason))  # fmt: skip
            report.failed.append(Failure(shown, reason))
            return None
        try:
            opened = share.open(path)
        except FileNotFoundError:
            seen.discard(path)  # vanished during the run: it counts as deleted
            report.files_seen -= 1
            return None
        except InsideDataFolder as exc:
            self._skip(path, str(exc), report)
            return None
        except FileChanged as exc:
            self._changed(path, str(exc), report)
            return None
        except ShareLost as exc:
            reason, count = self._not_read.get(share.root, (str(exc.strerror), 0))
            self._not_read[share.root] = (reason, count + 1)
            return None
        except OSError as exc:
            self._unopenable(path, exc, report)
            return None
        try:
            planned = self._plan_opened(path, opened, report, retry_failed)
            if isinstance(planned, ParseJob):
                opened.keep_content()
            return planned
        finally:
            opened.close()

    def _plan_opened(
        self, path: str, opened: SourceFile, report: IngestReport, retry_failed: bool
    ) -> ParseJob | _Ready | None:
        size, mtime = opened.size, opened.mtime
        doc_id = document_id(path)
        previous = self._ledger.get(path)
        if parser_for(Path(path)) is None:
            self._skip(path, f"unsupported file type {Path(path).suffix or '(none)'}", report)
            return None
        if (erased := self._ledger.tombstone_at(path, size, mtime)) is not None:
            self._skip(path, erasure_note(erased, path), report)
            return None
        try:
            acl = opened.readers()
        except UnreadablePermissions as exc:
            self._fail_closed(path, (size, mtime), previous, str(exc), report)
            return None
        except OSError as exc:
            report.failed.append(Failure(path, f"cannot read: {exc.strerror}"))
            return None
        # A file indexed before document contexts existed is read again.
        indexed = previous is not None and previous.status == "indexed"
        indexed = indexed and previous is not None and previous.profile is not None
        # A file that failed is tried again when it changes, or when asked to; one that
        # failed for a reason fixed elsewhere (permissions, a swap), at every run.
        retry = retry_failed or _retried_every_run(previous)
        settled = indexed or (previous is not None and previous.status == "failed"
                              and not retry)  # fmt: skip
        if settled and previous and (previous.size, previous.mtime) == (size, mtime):
            self._settle_unchanged(previous, acl, report)
            return None
        try:
            sha = opened.content_sha256()
        except OSError as exc:
            report.failed.append(Failure(path, f"cannot read: {exc.strerror}"))
            return None
        if (erased := self._ledger.tombstone_with_content(sha)) is not None:
            self._skip(path, erasure_note(erased, path), report)  # erased here, or a copy
            return None
        if settled and previous and previous.sha256 == sha:
            self._ledger.put(replace(previous, size=size, mtime=mtime))
            self._settle_unchanged(previous, acl, report)
            return None
        job = ParseJob(path, size, mtime, sha, doc_id, acl, previous, opened.parse_source(sha))
        return self._identical_indexed(job) or job

    def _identical_indexed(self, job: ParseJob) -> _Ready | None:
        """A file whose content is already indexed elsewhere (a moved file, a copy) takes
        that file's chunks and vectors under its own path: no parsing, OCR or embedding."""
        donor = self._ledger.indexed_with_content(job.sha256, other_than=job.path)
        if donor is None or donor.profile is None:
            return None  # none, or indexed before document contexts: parse this file
        found = self._store.document_chunks(donor.doc_id)
        if len(found) != donor.chunks or not found:
            return None  # the donor's chunks are incomplete: parse this file instead
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
        vectors = [vector for _, vector in found]
        notes = [donor.error] if donor.error else []
        # The donor's context may be another folder's: the end of the run sets it right.
        context = chunks[0].context
        return _Ready(job, chunks, vectors, donor.pages, donor.parser, donor.ocr_pages, notes,
                      parsed=False, profile=donor.profile,
                      context=context)  # fmt: skip

    def _take(
        self,
        parsed: list[tuple[ParseJob, ParseResult]],
        batch: _WriteBatch,
        report: IngestReport,
        progress: Progress,
    ) -> None:
        for job, result in parsed:
            ready = self._prepare(job, result, report)
            if ready is None:
                progress.advance(job.path, 0, 0)
            else:
                batch.add(ready)
        if batch.due():
            self._flush(batch, report, progress)

    def _prepare(self, job: ParseJob, result: ParseResult, report: IngestReport) -> _Ready | None:
        """A parsed file's chunks, ready to embed; or None when it failed (recorded)."""
        if isinstance(result, str):
            self._fail(job, result, report)
            return None
        chunks = self._chunks(job, result)
        if not chunks:
            self._store.delete_document(job.doc_id)
            self._touched.add(folder_of(job.path))
            self._fail(job, "no text found (empty document, or a scan OCR could not read)", report)
            return None
        own = profile(result, chunks[0].title)
        return _Ready(job, chunks, None, result.total_pages(), result.parser, result.ocr_pages,
                      result.notes, parsed=True, profile=own.to_json(), context="")  # fmt: skip

    def _with_context(self, documents: list[_Ready]) -> list[_Ready]:
        """The new documents' chunks with their document context: their own profile, then
        what the other files of their series define (those indexed, and those in the
        batch; the end of the run catches files indexed later)."""
        folders: dict[str, dict[str, Profile]] = {}
        for ready in documents:
            folder = folder_of(ready.job.path)
            if folder not in folders:
                folders[folder] = {
                    record.path: Profile.from_json(record.profile)
                    for record in self._ledger.indexed_in_folder(folder)
                }
            folders[folder][ready.job.path] = Profile.from_json(ready.profile)
        shared = {folder: series_names(profiles) for folder, profiles in folders.items()}
        updated = []
        for ready in documents:
            self._touched.add(folder_of(ready.job.path))
            if ready.vectors is not None:
                updated.append(ready)
                continue
            folder = folder_of(ready.job.path)
            series = shared[folder].get(series_of(ready.job.path))
            context = context_of(folders[folder][ready.job.path], series)
            chunks = [chunk.model_copy(update={"context": context}) for chunk in ready.chunks]
            updated.append(replace(ready, chunks=chunks, context=context))
        return updated

    def _flush(self, batch: _WriteBatch, report: IngestReport, progress: Progress) -> None:
        """Embed the batch's new chunks in one call and write all its documents at once."""
        documents = batch.take()
        if not documents:
            return
        documents = self._with_context(documents)
        new_vectors = iter(self._embedder.embed_documents(
            [chunk.embedding_text() for ready in documents if ready.vectors is None
             for chunk in ready.chunks]
        ))  # fmt: skip
        versions = [
            DocumentVersion(
                ready.job.doc_id,
                ready.chunks,
                ready.vectors or [next(new_vectors) for _ in ready.chunks],
            )
            for ready in documents
        ]
        # Marked before the index is touched: a run killed from here on leaves rows that the
        # next run re-parses, or cleans up when the file is gone, never orphaned chunks.
        self._ledger.put_many([ready.record("indexing") for ready in documents])
        self._store.replace_documents(versions)
        self._ledger.put_many([ready.record("indexed") for ready in documents])
        for ready in documents:
            previous = ready.job.previous
            if previous and previous.status == "indexed":
                report.updated += 1
            else:
                report.indexed += 1
            report.chunks += len(ready.chunks)
            report.warnings.extend(FileNote(ready.job.path, note) for note in ready.notes)
            pages = ready.pages if ready.parsed else 0
            report.pages += pages
            progress.advance(ready.job.path, pages, len(ready.chunks))

    def _fail(self, job: ParseJob, reason: str, report: IngestReport) -> None:
        self._ledger.put(
            FileRecord(
                job.path, job.size, job.mtime, job.sha256, job.doc_id, job.acl, "failed", reason
            )
        )
        report.failed.append(Failure(job.path, reason))

    def _fail_closed(
        self,
        path: str,
        size_and_mtime: tuple[int, float] | None,
        previous: FileRecord | None,
        reason: str,
        report: IngestReport,
    ) -> None:
        """Who may read the file is unknown: none of it stays in the index."""
        if previous is not None and previous.status != "skipped":
            self._store.delete_document(previous.doc_id)
            self._touched.add(folder_of(path))
        size, mtime = size_and_mtime or (0, 0.0)
        self._ledger.put(FileRecord(path, size, mtime, None, document_id(path), frozenset(),
                                    "failed", reason))  # fmt: skip
        report.failed.append(Failure(path, reason))

    def _unopenable(self, path: str, exc: OSError, report: IngestReport) -> None:
        """The file, or a folder above it, cannot be opened: refused access means who may
        read it cannot be known (fail closed); anything else fails it for this run only."""
        if parser_for(Path(path)) is None:
            self._skip(path, f"unsupported file type {Path(path).suffix or '(none)'}", report)
        elif isinstance(exc, PermissionError):
            where = "the file" if exc.filename in (None, path) else f"folder {exc.filename}"
            unreadable = UnreadablePermissions(f"cannot open {where} ({exc.strerror})")
            self._fail_closed(path, None, self._ledger.get(path), str(unreadable), report)
        else:
            report.failed.append(Failure(path, f"cannot read: {exc.strerror}"))

    def _changed(self, path: str, reason: str, report: IngestReport) -> None:
        """The file is no longer what the crawl saw: it is not read this run. A file the
        ledger knows keeps its row and chunks as they are (they describe the file as it was
        last read); a new one gets a failed row. Either is read again on the next run."""
        if self._ledger.get(path) is None:
            self._ledger.put(FileRecord(path, 0, 0.0, None, document_id(path), frozenset(),
                                        "failed", reason))  # fmt: skip
        report.failed.append(Failure(path, reason))

    def _chunks(self, job: ParseJob, document: ParsedDocument) -> list[Chunk]:
        """The file's passages, then each attachment's (an e-mail's), numbered in that order."""
        chunks: list[Chunk] = []
        for attachment, title, part in _parts(document, Path(job.path).name):
            language = detect_language("\n".join(block.text for block in part.blocks[:200]))
            for passage in passages(part, title, self._settings.chunking.max_chars):
                chunks.append(
                    Chunk(
                        id=chunk_id(job.doc_id, len(chunks)),
                        doc_id=job.doc_id,
                        ordinal=len(chunks),
                        text=passage.text,
                        path=job.path,
                        page=passage.page,
                        title=title,
                        section=passage.section,
                        attachment=attachment,
                        language=language,
                        content_sha256=job.sha256,
                        acl=job.acl,
                        mtime=job.mtime,
                    )
                )
        return chunks

    def _settle_unchanged(
        self, previous: FileRecord, acl: frozenset[str], report: IngestReport
    ) -> None:
        self._refresh_acl(previous, acl)
        report.unchanged += 1
        if previous.status == "failed":
            report.still_failed += 1

    def _refresh_acl(self, previous: FileRecord, acl: frozenset[str]) -> None:
        if previous.acl != acl:
            self._store.set_acl(previous.doc_id, acl)
            self._ledger.put(replace(previous, acl=acl))

    def _forget(self, path: str) -> None:
        record = self._ledger.get(path)
        if record is not None:
            self._store.delete_document(record.doc_id)
            self._touched.add(folder_of(path))
        self._ledger.remove(path)
