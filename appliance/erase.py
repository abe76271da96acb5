"""Erasing a document on request (GDPR Art. 17), so that nothing the appliance keeps still
holds its content: its chunks in the index, its page pictures, its passages (and answers
quoted from it) in every user's conversations and ratings, and its ledger row's content
fields. A tombstone in the ledger keeps ingestion from indexing it again, at its path or at
any other (a copy, a restored backup), while its content is unchanged. The file on the share
is not touched: the appliance reads shares read-only. The names the document defined leave
the document contexts of the other files in its folder, which are re-embedded without them
(`ingest.context`).

Identical copies already indexed at other paths are erased with it: same content, same data.
The erasure is idempotent: run again after an interruption, it completes what is left.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from appliance.audit import AuditLog, build_audit
from appliance.errors import UnknownDocument
from ingest.context import folder_of, refresh_folders
from ingest.ledger import FileRecord, Ledger, Tombstone, erasure_note
from retrieval.build import build_embedder, build_store
from retrieval.embedder import Embedder
from retrieval.store import VectorStore
from settings import Settings


class DocumentRecords(Protocol):
    """Something that keeps passages of documents: the conversations, the ratings."""

    def erase_document(self, doc_id: str) -> int: ...


@dataclass(frozen=True)
class ErasedFile:
    path: str
    doc_id: str
    chunks_removed: int
    remaining: int


@dataclass
class Erasure:
    """What an erasure removed: the document asked for, then its identical copies."""

    erased: list[ErasedFile] = field(default_factory=list)
    records_changed: int = 0  # conversation turns and ratings that held its passages

    def as_json(self) -> dict[str, object]:
        first = self.erased[0]
        return {
            "doc_id": first.doc_id,
            "path": first.path,
            "chunks_removed": sum(e.chunks_removed for e in self.erased),
            "remaining": sum(e.remaining for e in self.erased),
            "copies": [{"path": e.path, "doc_id": e.doc_id} for e in self.erased[1:]],
            "records_changed": self.records_changed,
        }


def erase(
    settings: Settings,
    *,
    path: str | None = None,
    doc_id: str | None = None,
    by: str = "operator",
    records: Sequence[DocumentRecords] = (),
    store: VectorStore | None = None,
    audit: AuditLog | None = None,
    audit_detail: Mapping[str, object] | None = None,
) -> Erasure:
    """Erase the document ingested from `path` (or with `doc_id`) and its identical copies;
    `by` names who asked, for the tombstone and the audit log (whose events also carry
    `audit_detail`). Uses `store` when the caller shares one (else a store of its own, closed
    at the end). Raises UnknownDocument."""
    if (path is None) == (doc_id is None):
        raise ValueError("give a path or a document id, not both")
    ledger = Ledger(settings.ledger_path)
    own_store = store is None
    index = store or build_store(settings)
    audit = audit or build_audit(settings)
    erasure = Erasure()
    try:
        target = _find(ledger, path, doc_id)
        pending, done = [target], set()
        while pending:
            file = pending.pop(0)
            if file.path in done:
                continue
            done.add(file.path)
            tombstones = _tombstones(file, by)
            erased = _erase_file(settings, ledger, index, file, tombstones)
            erasure.erased.append(erased)
            for kept in records:
                erasure.records_changed += kept.erase_document(file.doc_id)
            detail: dict[str, object] = {
                "doc_id": erased.doc_id,
                "path": erased.path,
                "chunks_removed": erased.chunks_removed,
                "remaining": erased.remaining,
            }
            if file is not target:
                detail["copy_of"] = target.doc_id
            audit.record(by, "erase", {**detail, **(audit_detail or {})})
            for content in {t.sha256 for t in tombstones if t.sha256}:
                pending.extend(ledger.copies_of(content, file.path))
        folders = {folder_of(erased.path) for erased in erasure.erased}
        refresh_folders(folders, ledger, index, _LazyEmbedding(settings))
        index.compact()  # the engine's log and old segments still hold the erased chunks
    finally:
        if own_store:
            index.close()
        ledger.close()
    return erasure


class _LazyEmbedding:
    """The embedder, loaded only when a neighbour's passages must be embedded again."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._embedder: Embedder | None = None

    def __call__(self, texts: list[str]) -> list[list[float]]:
        if self._embedder is None:
            self._embedder = build_embedder(self._settings)
        return self._embedder.embed_documents(texts)


def _find(ledger: Ledger, path: str | None, doc_id: str | None) -> FileRecord:
    """The ledger row of the document; a row rebuilt from its tombstone when the file has
    since left the ledger (erased before, then deleted at the source)."""
    if doc_id is not None:
        record = ledger.with_doc_id(doc_id)
        tombstones = ledger.tombstones(doc_id=doc_id)
        asked = f"document id {doc_id}"
    else:
        assert path is not None
        candidates = dict.fromkeys([os.path.abspath(path), os.path.realpath(path)])
        record, tombstones = None, []
        for candidate in candidates:
            record = record or ledger.get(candidate)
            tombstones = tombstones or ledger.tombstones(path=candidate)
        asked = path
    if record is not None:
        return record
    if tombstones:
        last = tombstones[-1]
        return FileRecord(last.path, last.size, last.mtime, None, last.doc_id, frozenset(),
                          "skipped")  # fmt: skip
    raise UnknownDocument(
        f"no ingested file at {asked}; give the absolute path shown in the UI's Library or "
        "by `rag search` (`rag status` counts what is indexed)"
    )


def _erase_file(
    settings: Settings,
    ledger: Ledger,
    store: VectorStore,
    file: FileRecord,
    tombstones: Sequence[Tombstone],
) -> ErasedFile:
    # The tombstone first: a run interrupted from here on is completed by running it again,
    # and ingestion meanwhile does not bring the file back.
    ledger.erase(file.path, tombstones, erasure_note(tombstones[0], file.path))
    before = store.count(file.doc_id)
    store.delete_document(file.doc_id)
    remaining = store.count(file.doc_id)
    pictures = settings.page_images_dir / file.doc_id
    if pictures.parent == settings.page_images_dir and pictures.is_dir():
        shutil.rmtree(pictures)
    return ErasedFile(file.path, file.doc_id, before - remaining, remaining)


def _tombstones(file: FileRecord, by: str) -> list[Tombstone]:
    """The file as it is now on the share, and as the ledger knew it when that differs
    (changed since it was indexed, or already gone; a link or a FIFO in its place is not
    read: the ledger's record alone counts then)."""
    now = time.time()
    recorded = Tombstone(file.path, file.doc_id, file.size, file.mtime, file.sha256, now, by)
    try:  # never through a link, nor from a FIFO: only a file at that very path counts
        fd = os.open(file.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return [recorded]
    with open(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return [recorded]
        try:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError:
            return [recorded]
    current = Tombstone(file.path, file.doc_id, st.st_size, st.st_mtime, sha256, now, by)
    if file.sha256 in (None, sha256):
        return [current]
    return [current, recorded]
