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
from ingest.document import ParsedDocument
from ingest.errors import BadIngestRoot, ParseError
from ingest.ledger import FileRecord, Ledger
from ingest.parsers import parse, parser_for
from ingest.permissions import principals_from_stat
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

    def advance(self, path: str, pages: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def start(self, total_files: int) -> None:
        pass

    def advance(self, path: str, pages: int) -> None:
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


def crawl(root: str) -> Iterator[str]:
    """Regular files under a root, sorted; hidden entries and symlinked folders are not entered."""
    if os.path.isfile(root):
        yield root
        return
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield os.path.join(folder, name)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Ingestor:
    def __init__(
        self, settings: Settings, embedder: Embedder, store: VectorStore, ledger: Ledger
    ) -> None:
        self._settings = settings
        self._embedder = embedder
        self._store = store
        self._ledger = ledger

    def run(self, roots: Sequence[str], progress: Progress | None = None) -> IngestReport:
        progress = progress or NoProgress()
        started = time.monotonic()
        report = IngestReport()
        absolute_roots = check_roots(roots)
        self._store.ensure_collection(self._embedder.dimension)
        seen: set[str] = set()
        files = [path for root in absolute_roots for path in crawl(root)]
        progress.start(len(files))
        for path in files:
            if path in seen:
                continue
            seen.add(path)
            report.files_seen += 1
            pages = self._sync_file(path, report)
            progress.advance(path, pages)
        for root in absolute_roots:
            for path in list(self._ledger.paths_under(root)):
                if path not in seen:
                    self._forget(path)
                    report.deleted += 1
        progress.finish()
        report.seconds = time.monotonic() - started
        return report

    def _sync_file(self, path: str, report: IngestReport) -> int:
        """Bring one file's index entries up to date; returns the pages it parsed."""
        try:
            st = os.stat(path)
        except OSError as exc:
            report.failed.append(Failure(path, f"cannot stat: {exc.strerror}"))
            return 0
        acl = principals_from_stat(st)
        doc_id = document_id(path)
        previous = self._ledger.get(path)
        if parser_for(Path(path)) is None:
            self._ledger.put(
                FileRecord(
                    path,
                    st.st_size,
                    st.st_mtime,
                    None,
                    doc_id,
                    acl,
                    "skipped",
                    f"unsupported file type {Path(path).suffix or '(none)'}",
                )
            )
            report.skipped += 1
            return 0
        unchanged_stat = previous is not None and (previous.size, previous.mtime) == (
            st.st_size,
            st.st_mtime,
        )
        if previous and previous.status == "indexed" and unchanged_stat:
            self._refresh_acl(previous, acl)
            report.unchanged += 1
            return 0
        try:
            sha = sha256_of(path)
        except OSError as exc:
            report.failed.append(Failure(path, f"cannot read: {exc.strerror}"))
            return 0
        if previous and previous.status == "indexed" and previous.sha256 == sha:
            self._ledger.put(replace(previous, size=st.st_size, mtime=st.st_mtime))
            self._refresh_acl(previous, acl)
            report.unchanged += 1
            return 0
        try:
            document = parse(Path(path), self._settings.ocr)
        except ParseError as exc:
            self._ledger.put(
                FileRecord(path, st.st_size, st.st_mtime, sha, doc_id, acl, "failed", exc.reason)
            )
            report.failed.append(Failure(path, exc.reason))
            return 0
        chunks = self._chunks(path, doc_id, sha, acl, st.st_mtime, document)
        if not chunks:
            reason = "no text found (empty document, or a scan OCR could not read)"
            self._ledger.put(
                FileRecord(path, st.st_size, st.st_mtime, sha, doc_id, acl, "failed", reason)
            )
            self._store.delete_document(doc_id)
            report.failed.append(Failure(path, reason))
            return document.pages
        vectors = self._embedder.embed_documents([c.embedding_text() for c in chunks])
        self._store.upsert(chunks, vectors)
        self._store.delete_document(doc_id, from_ordinal=len(chunks))
        self._ledger.put(
            FileRecord(
                path,
                st.st_size,
                st.st_mtime,
                sha,
                doc_id,
                acl,
                "indexed",
                None,
                document.pages,
                len(chunks),
                document.parser,
                tuple(document.ocr_pages),
            )
        )
        if previous and previous.status == "indexed":
            report.updated += 1
        else:
            report.indexed += 1
        report.pages += document.pages
        report.chunks += len(chunks)
        return document.pages

    def _chunks(
        self,
        path: str,
        doc_id: str,
        sha: str,
        acl: frozenset[str],
        mtime: float,
        document: ParsedDocument,
    ) -> list[Chunk]:
        title = document.title(Path(path).stem.replace("-", " ").replace("_", " "))
        return [
            Chunk(
                id=chunk_id(doc_id, ordinal),
                doc_id=doc_id,
                ordinal=ordinal,
                text=passage.text,
                path=path,
                page=passage.page,
                title=title,
                section=passage.section,
                content_sha256=sha,
                acl=acl,
                mtime=mtime,
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
