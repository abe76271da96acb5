"""The ledger: one row per source file, the source of truth for what the index holds."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# "indexing": chunks are being written; a row left so by a killed run is redone next run.
Status = Literal["indexing", "indexed", "failed", "skipped"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path        TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    mtime       REAL NOT NULL,
    sha256      TEXT,
    doc_id      TEXT NOT NULL,
    acl         TEXT NOT NULL,
    status      TEXT NOT NULL,
    error       TEXT,
    pages       INTEGER NOT NULL DEFAULT 0,
    chunks      INTEGER NOT NULL DEFAULT 0,
    parser      TEXT,
    ocr_pages   TEXT NOT NULL DEFAULT '[]',
    first_seen  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_sha256 ON files (sha256);
"""
# The columns of a FileRecord, in its field order.
_SELECT = (
    "SELECT path, size, mtime, sha256, doc_id, acl, status, error, pages, chunks, parser, "
    "ocr_pages FROM files "
)
_UPSERT = (
    "INSERT INTO files (path, size, mtime, sha256, doc_id, acl, status, error, pages, "
    "chunks, parser, ocr_pages, first_seen, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime=excluded.mtime, "
    "sha256=excluded.sha256, doc_id=excluded.doc_id, acl=excluded.acl, "
    "status=excluded.status, error=excluded.error, pages=excluded.pages, "
    "chunks=excluded.chunks, parser=excluded.parser, ocr_pages=excluded.ocr_pages, "
    "updated_at=excluded.updated_at"
)


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int
    mtime: float
    sha256: str | None
    doc_id: str
    acl: frozenset[str]
    status: Status
    error: str | None = None
    pages: int = 0
    chunks: int = 0
    parser: str | None = None
    ocr_pages: tuple[int, ...] = ()


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def get(self, path: str) -> FileRecord | None:
        row = self._db.execute(
            _SELECT + "WHERE path = ?",
            (path,),
        ).fetchone()
        return _record(row) if row else None

    def put(self, record: FileRecord) -> None:
        self.put_many([record])

    def put_many(self, records: Sequence[FileRecord]) -> None:
        """Insert or update rows in one transaction: all of them land, or none."""
        now = time.time()
        rows = [
            (
                r.path, r.size, r.mtime, r.sha256, r.doc_id, json.dumps(sorted(r.acl)),
                r.status, r.error, r.pages, r.chunks, r.parser, json.dumps(list(r.ocr_pages)),
                now, now,
            )
            for r in records
        ]  # fmt: skip
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(_UPSERT, rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def indexed_with_content(self, sha256: str, other_than: str) -> FileRecord | None:
        """Another indexed file with this content: a copy, or where a moved file was."""
        row = self._db.execute(
            _SELECT + "WHERE sha256 = ? AND status = 'indexed' AND path != ? LIMIT 1",
            (sha256, other_than),
        ).fetchone()
        return _record(row) if row else None

    def clear(self) -> None:
        """Forget every file: the next run reads them all again."""
        self._db.execute("DELETE FROM files")

    def remove(self, path: str) -> None:
        self._db.execute("DELETE FROM files WHERE path = ?", (path,))

    def paths_under(self, root: str) -> Iterator[str]:
        """Paths recorded under a folder (or equal to a file path)."""
        prefix = root.rstrip("/") + "/"
        for (path,) in self._db.execute(
            "SELECT path FROM files WHERE path = ? OR substr(path, 1, ?) = ?",
            (root, len(prefix), prefix),
        ):
            yield path

    def totals(self) -> dict[str, int]:
        documents, chunks = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(chunks), 0) FROM files WHERE status = 'indexed'"
        ).fetchone()
        (failed,) = self._db.execute(
            "SELECT COUNT(*) FROM files WHERE status = 'failed'"
        ).fetchone()
        (skipped,) = self._db.execute(
            "SELECT COUNT(*) FROM files WHERE status = 'skipped'"
        ).fetchone()
        return {"documents": documents, "chunks": chunks, "failed": failed, "skipped": skipped}

    def close(self) -> None:
        self._db.close()


def _record(row: tuple[Any, ...]) -> FileRecord:
    return FileRecord(
        path=row[0],
        size=row[1],
        mtime=row[2],
        sha256=row[3],
        doc_id=row[4],
        acl=frozenset(json.loads(row[5])),
        status=row[6],
        error=row[7],
        pages=row[8],
        chunks=row[9],
        parser=row[10],
        ocr_pages=tuple(json.loads(row[11])),
    )
