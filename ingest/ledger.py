"""The ledger: one row per source file, the source of truth for what the index holds."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

# The `index_facts` row naming the embedding model whose vectors the index holds.
EMBEDDER_FACT = "embedder_model"
# What an index that holds files but names no model was built with: it predates the record.
UNRECORDED_MODEL = "an unrecorded model (indexed before the index named its model)"


# "indexing": chunks are being written; a row left so by a killed run is redone next run.
Status = Literal["indexing", "indexed", "failed", "skipped"]
STATES: tuple[Status, ...] = get_args(Status)

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
    profile     TEXT,
    context     TEXT,
    first_seen  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_sha256 ON files (sha256);
CREATE TABLE IF NOT EXISTS tombstones (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    path        TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    mtime       REAL NOT NULL,
    sha256      TEXT,
    erased_at   REAL NOT NULL,
    erased_by   TEXT NOT NULL,
    UNIQUE (path, sha256)
);
CREATE INDEX IF NOT EXISTS tombstones_by_sha256 ON tombstones (sha256);
CREATE TABLE IF NOT EXISTS index_facts (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
"""
# The columns of a FileRecord, in its field order.
_SELECT = (
    "SELECT path, size, mtime, sha256, doc_id, acl, status, error, pages, chunks, parser, "
    "ocr_pages, profile, context FROM files "
)
_UPSERT = (
    "INSERT INTO files (path, size, mtime, sha256, doc_id, acl, status, error, pages, "
    "chunks, parser, ocr_pages, profile, context, first_seen, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime=excluded.mtime, "
    "sha256=excluded.sha256, doc_id=excluded.doc_id, acl=excluded.acl, "
    "status=excluded.status, error=excluded.error, pages=excluded.pages, "
    "chunks=excluded.chunks, parser=excluded.parser, ocr_pages=excluded.ocr_pages, "
    "profile=excluded.profile, context=excluded.context, updated_at=excluded.updated_at"
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
    # What the document says it is (`ingest.context.Profile` as JSON), and the document
    # context its chunks were embedded with; None for a file indexed before either existed.
    profile: str | None = None
    context: str | None = None


@dataclass(frozen=True)
class Tombstone:
    """A file erased on request: ingestion does not index it again, at this path or any
    other, while its content is the same."""

    path: str
    doc_id: str
    size: int
    mtime: float
    sha256: str | None
    erased_at: float
    erased_by: str


_TOMBSTONE_COLUMNS = "path, doc_id, size, mtime, sha256, erased_at, erased_by"


def erasure_note(tombstone: Tombstone, path: str) -> str:
    """Why ingestion skips a file that was erased (`path`), or is a copy of one."""
    when = datetime.fromtimestamp(tombstone.erased_at, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    what = "erased" if tombstone.path == path else f"same content as {tombstone.path}, erased"
    return (
        f"{what} on {when} by {tombstone.erased_by}: not indexed again while its content is "
        "unchanged; delete or move the file at the source"
    )


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(files)")}
        for added in ("profile", "context"):  # a ledger written before document contexts
            if added not in columns:
                self._db.execute(f"ALTER TABLE files ADD COLUMN {added} TEXT")

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
                r.profile, r.context, now, now,
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
        """Forget every file and the index's model: the next run reads them all again.
        Tombstones stay."""
        self._db.execute("BEGIN IMMEDIATE")
        self._db.execute("DELETE FROM files")
        self._db.execute("DELETE FROM index_facts WHERE name = ?", (EMBEDDER_FACT,))
        self._db.execute("COMMIT")

    def index_model(self) -> str | None:
        """The embedding model the index was built with; None before the first run."""
        row = self._db.execute(
            "SELECT value FROM index_facts WHERE name = ?", (EMBEDDER_FACT,)
        ).fetchone()
        if row:
            return str(row[0])
        indexed = self._db.execute("SELECT 1 FROM files WHERE status = 'indexed' LIMIT 1")
        return UNRECORDED_MODEL if indexed.fetchone() else None

    def record_index_model(self, model_id: str) -> None:
        self._db.execute(
            "INSERT INTO index_facts (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (EMBEDDER_FACT, model_id),
        )

    def with_doc_id(self, doc_id: str) -> FileRecord | None:
        row = self._db.execute(_SELECT + "WHERE doc_id = ? LIMIT 1", (doc_id,)).fetchone()
        return _record(row) if row else None

    def copies_of(self, sha256: str, other_than: str) -> list[FileRecord]:
        """Every other file with this content, whatever its status."""
        rows = self._db.execute(
            _SELECT + "WHERE sha256 = ? AND path != ? ORDER BY path", (sha256, other_than)
        ).fetchall()
        return [_record(row) for row in rows]

    def erase(self, path: str, tombstones: Sequence[Tombstone], reason: str) -> None:
        """Record the tombstones and blank the file's row down to what recognises the file
        (path, size, mtime, doc_id, ACL): one transaction. The row becomes `skipped`, with
        `reason` as its error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                f"INSERT OR IGNORE INTO tombstones ({_TOMBSTONE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(t.path, t.doc_id, t.size, t.mtime, t.sha256, t.erased_at, t.erased_by)
                 for t in tombstones],
            )  # fmt: skip
            self._db.execute(
                "UPDATE files SET sha256 = NULL, status = 'skipped', error = ?, pages = 0, "
                "chunks = 0, parser = NULL, ocr_pages = '[]', profile = NULL, context = NULL, "
                "updated_at = ? WHERE path = ?",
                (reason, time.time(), path),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def tombstone_at(self, path: str, size: int, mtime: float) -> Tombstone | None:
        """The tombstone of this path when the file still has the size and mtime it had
        when erased: the same file, no need to hash it."""
        row = self._db.execute(
            f"SELECT {_TOMBSTONE_COLUMNS} FROM tombstones "
            "WHERE path = ? AND size = ? AND mtime = ? ORDER BY id DESC LIMIT 1",
            (path, size, mtime),
        ).fetchone()
        return Tombstone(*row) if row else None

    def tombstone_with_content(self, sha256: str) -> Tombstone | None:
        """A tombstone of this content, at any path: an erased file, a copy or a backup."""
        row = self._db.execute(
            f"SELECT {_TOMBSTONE_COLUMNS} FROM tombstones WHERE sha256 = ? "
            "ORDER BY id DESC LIMIT 1",
            (sha256,),
        ).fetchone()
        return Tombstone(*row) if row else None

    def tombstones(self, path: str | None = None, doc_id: str | None = None) -> list[Tombstone]:
        """Tombstones, oldest first: all, or those of a path or a document id."""
        rows = self._db.execute(
            f"SELECT {_TOMBSTONE_COLUMNS} FROM tombstones "
            "WHERE (? IS NULL OR path = ?) AND (? IS NULL OR doc_id = ?) ORDER BY id",
            (path, path, doc_id, doc_id),
        ).fetchall()
        return [Tombstone(*row) for row in rows]

    def remove(self, path: str) -> None:
        self._db.execute("DELETE FROM files WHERE path = ?", (path,))

    def indexed_in_folder(self, folder: str) -> list[FileRecord]:
        """The indexed files directly in a folder (not in its subfolders), by path."""
        prefix = folder.rstrip("/") + "/"
        rows = self._db.execute(
            _SELECT + "WHERE status = 'indexed' AND substr(path, 1, ?) = ? "
            "AND instr(substr(path, ?), '/') = 0 ORDER BY path",
            (len(prefix), prefix, len(prefix) + 1),
        ).fetchall()
        return [_record(row) for row in rows]

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
        (erased,) = self._db.execute("SELECT COUNT(DISTINCT path) FROM tombstones").fetchone()
        return {
            "documents": documents, "chunks": chunks, "failed": failed, "skipped": skipped,
            "erased": erased,
        }  # fmt: skip

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
        profile=row[12],
        context=row[13],
    )


# -- reading it without writing ---------------------------------------------------------------

# A file's ACL (a JSON list) shares a principal with the scope's (the first JSON list
# parameter) and holds none of the scope's deny entries (the second): `Scope.may_read`.
_READABLE = (
    "EXISTS (SELECT 1 FROM json_each(files.acl) AS acl "
    "WHERE acl.value IN (SELECT value FROM json_each(?))) "
    "AND NOT EXISTS (SELECT 1 FROM json_each(files.acl) AS acl "
    "WHERE acl.value IN (SELECT value FROM json_each(?)))"
)
_DEFINED_NAMES = (
    "SELECT json_extract(n.value, '$[0]'), json_extract(n.value, '$[1]'), "
    "lower(json_extract(n.value, '$[0]')), lower(json_extract(n.value, '$[1]')), "
    "(SELECT json_group_array(acl.value) FROM json_each(files.acl) AS acl "
    "WHERE acl.type = 'text') "
    "FROM files, json_each(files.profile, '$.names') AS n "
    "WHERE files.status = 'indexed' AND files.profile IS NOT NULL"
)


def _read_only(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)


class LedgerReader:
    """The ledger for those who only look at it (the library catalog, metrics, backups):
    read-only connections, which never create, lock for writing or change it. A ledger no
    ingestion run has written yet reads as empty.

    `version` tells a reader that keeps what it read when to read again: it changes whenever
    the ledger does (the file's identity, its write-ahead log's size and time, and SQLite's
    count of commits by other connections, read on a connection kept open for it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._watcher: sqlite3.Connection | None = None
        self._watched: tuple[int, int] | None = None  # the identity of the file it has open

    def indexed_files(
        self, principals: Sequence[str] | None = None, denials: Sequence[str] = ()
    ) -> list[tuple[Any, ...]]:
        """(path, doc_id, pages, chunks, status, parser, updated_at) of the indexed files;
        when `principals` are given, of those whose ACL holds one of them and none of
        `denials` (a scope's deny entries)."""
        query = (
            "SELECT path, doc_id, pages, chunks, status, parser, updated_at FROM files "
            "WHERE status = 'indexed'"
        )
        if principals is None:
            return self._rows(query)
        readable = (json.dumps(sorted(principals)), json.dumps(sorted(denials)))
        return self._rows(f"{query} AND {_READABLE}", readable)

    def files_in(self, statuses: Sequence[str]) -> list[tuple[Any, ...]]:
        """(path, doc_id, status, error, updated_at) of the files in these states."""
        marks = ", ".join("?" for _ in statuses)
        return self._rows(
            f"SELECT path, doc_id, status, error, updated_at FROM files WHERE status IN ({marks})",
            tuple(statuses),
        )

    def index_model(self) -> str | None:
        """The embedding model the index was built with (None: no ingestion run yet)."""
        rows = self._rows("SELECT value FROM index_facts WHERE name = ?", (EMBEDDER_FACT,))
        if rows:
            return str(rows[0][0])
        indexed = self._rows("SELECT 1 FROM files WHERE status = 'indexed' LIMIT 1")
        return UNRECORDED_MODEL if indexed else None

    def counts(self) -> dict[str, int]:
        """Files by state, the chunks of the indexed ones (`chunks`), the files erased
        (`erased`); zeros before the first ingestion."""
        counts = {state: 0 for state in STATES} | {"chunks": 0, "erased": 0}
        for status, files, chunks in self._rows(
            "SELECT status, COUNT(*), COALESCE(SUM(chunks), 0) FROM files GROUP BY status"
        ):
            counts[status] = files
            if status == "indexed":
                counts["chunks"] = chunks
        erased = self._rows("SELECT COUNT(DISTINCT path) FROM tombstones")
        counts["erased"] = erased[0][0] if erased else 0
        return counts

    def version(self) -> tuple[object, ...] | None:
        """What changes whenever the ledger does; None while there is no ledger."""
        try:
            ledger = os.stat(self.path)
        except FileNotFoundError:
            ledger = None
        if ledger is None or not stat.S_ISREG(ledger.st_mode):
            self.close()
            return None
        identity = (ledger.st_dev, ledger.st_ino)
        if self._watcher is None or self._watched != identity:
            self.close()
            self._watcher = _read_only(self.path)
            self._watched = identity
        (data_version,) = self._watcher.execute("PRAGMA data_version").fetchone()
        try:  # after the first read: reading a ledger in WAL mode may create its log
            log = os.stat(f"{self.path}-wal")
            log_state: tuple[int, int] | None = (log.st_size, log.st_mtime_ns)
        except FileNotFoundError:
            log_state = None
        return identity, log_state, data_version

    def defined_names(self) -> list[tuple[Any, ...]]:
        """(short, long, short lowered, long lowered, ACL as a JSON list) of each name an
        indexed file defines, read on the connection `version` was read on."""
        if self._watcher is None:
            return []
        try:
            return self._watcher.execute(_DEFINED_NAMES).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        self._watcher, self._watched = None, None

    def _rows(self, query: str, parameters: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.path.is_file():
            return []
        database = _read_only(self.path)
        try:
            return database.execute(query, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a ledger no ingestion run has written to yet
                return []
            raise
        finally:
            database.close()
