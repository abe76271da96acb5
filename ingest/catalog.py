"""The library: what the ledger holds, as a user may see it.

The UI may not import `ingest`, so this reads the ingest ledger's SQLite file itself, opened
read-only: the catalog never creates, locks for writing or changes the ledger. A ledger that
does not exist yet means an empty library.

A scope sees a file when the file's ACL shares at least one of the scope's principals (the
same rule the vector store applies to chunks); the operator's scope sees every file and an
empty scope sees none. The ACL is applied in SQL, so a path the scope may not read never
leaves the database.

`names_in(scope, query)` gives the names (short, long) that the readable indexed files define
(`ingest.context`, kept in each row's profile) and that the query uses, by either form: the
retriever expands a question with the other form. Abbreviations alone are matched ("DORA",
"DSGVO"), not self-references such as "the Regulation". It runs on every search, so the
names are read from the ledger once, each with the ACLs of the files that define it, and
read again only when the ledger has changed: when the file is another one (replaced,
restored), its write-ahead log has changed size or time, or SQLite's `data_version` (kept
on an open read-only connection) says another connection committed. A name stays visible
by the same rule as the files: only through a file the scope may read.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from retrieval.access import Scope

_INDEXED = "indexed"
# The `index_facts` row naming the embedding model whose vectors the index holds (the ledger
# writes it).
EMBEDDER_FACT = "embedder_model"
# What an index that holds files but names no model was built with: it predates the record.
UNRECORDED_MODEL = "an unrecorded model (indexed before the index named its model)"
# The file's ACL (a JSON list) shares a principal with the scope's (a JSON list parameter).
_READABLE = (
    "EXISTS (SELECT 1 FROM json_each(files.acl) AS acl "
    "WHERE acl.value IN (SELECT value FROM json_each(?)))"
)


@dataclass(frozen=True)
class CatalogEntry:
    path: str
    folder: str
    name: str
    file_type: str  # the extension, lowercase, without the dot: `pdf`; empty if none
    pages: int
    chunks: int
    status: str
    parser: str | None
    indexed_at: datetime  # when the ledger row was last written, UTC
    doc_id: str


@dataclass(frozen=True)
class FailedEntry:
    path: str
    folder: str
    name: str
    status: str  # `failed`, or `skipped` when asked for
    error: str
    at: datetime  # when the file was last tried, UTC
    doc_id: str


_ROMAN = re.compile(r"^[IVXLCDM]+$")
_UNREAD = object()  # the version of a name table not read yet
# Every name the indexed files define, each with the file's ACL (its principals, as a JSON
# list: the values `_READABLE` compares) and SQLite's lowercase of both forms (what the
# ledger's own matching used), in the ledger's row order.
_ALL_NAMES = (
    "SELECT json_extract(n.value, '$[0]'), json_extract(n.value, '$[1]'), "
    "lower(json_extract(n.value, '$[0]')), lower(json_extract(n.value, '$[1]')), "
    "(SELECT json_group_array(acl.value) FROM json_each(files.acl) AS acl "
    "WHERE acl.type = 'text') "
    "FROM files, json_each(files.profile, '$.names') AS n "
    "WHERE files.status = ? AND files.profile IS NOT NULL"
)


def is_abbreviation(short: str) -> bool:
    """A short form typed as a word of its own ("DORA", "DSGVO"), not a phrase: 2 to 12
    characters, two capitals or more, not a roman numeral."""
    capitals = sum(1 for c in short if c.isupper())
    return (
        " " not in short
        and 2 <= len(short) <= 12
        and capitals >= 2
        and not _ROMAN.match(short)
        and any(c.isalpha() for c in short)
    )


def folded_words(text: str) -> list[str]:
    """The text's words, case and accents folded: how names are matched in a question."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.findall(r"[^\W_]+", plain)


class Catalog:
    def __init__(self, ledger_path: Path) -> None:
        self._path = ledger_path
        self._names_lock = threading.Lock()
        self._names_table = _NameTable([])
        self._names_version: object = _UNREAD
        self._watcher: sqlite3.Connection | None = None  # kept open to read `data_version`
        self._watched: tuple[int, int] | None = None  # the identity of the file it has open

    def documents(self, scope: Scope, name_contains: str = "") -> list[CatalogEntry]:
        """The indexed files the scope may read whose name contains `name_contains` (any
        case), sorted by folder, then name."""
        if scope.sees_nothing:
            return []
        query = (
            "SELECT path, doc_id, pages, chunks, status, parser, updated_at FROM files "
            "WHERE status = ?"
        )
        parameters: tuple[object, ...] = (_INDEXED,)
        if not scope.unrestricted:
            query += f" AND {_READABLE}"
            parameters += (json.dumps(sorted(scope.principals)),)
        wanted = name_contains.strip().casefold()
        entries = [
            _entry(row)
            for row in self._rows(query, parameters)
            if wanted in PurePath(row[0]).name.casefold()
        ]
        return sorted(entries, key=lambda e: (e.folder.casefold(), e.name.casefold(), e.path))

    def names_in(self, scope: Scope, query: str) -> list[tuple[str, str]]:
        """The names defined by files the scope may read that the query uses: an
        abbreviation as one of its words, or a full name as a run of its words; each once,
        in the order the ledger's rows first define them for the scope."""
        if scope.sees_nothing or not query.strip():
            return []
        return self._names().used_in(scope, query)

    def _names(self) -> _NameTable:
        """The ledger's names as of now: the table read last, or read again if the ledger
        changed since."""
        with self._names_lock:
            version = self._ledger_version()
            if version != self._names_version:
                self._names_table = _NameTable([]) if version is None else self._read_names()
                self._names_version = version
            return self._names_table

    def _ledger_version(self) -> tuple[object, ...] | None:
        """What changes whenever the ledger does: the file's identity, its write-ahead log's
        size and time, and SQLite's count of commits by other connections (read on a
        connection kept open for it). None while there is no ledger."""
        try:
            ledger = os.stat(self._path)
        except FileNotFoundError:
            ledger = None
        if ledger is None or not stat.S_ISREG(ledger.st_mode):
            self._forget_connection()
            return None
        identity = (ledger.st_dev, ledger.st_ino)
        if self._watcher is None or self._watched != identity:
            self._forget_connection()
            self._watcher = _read_only(self._path)
            self._watched = identity
        (data_version,) = self._watcher.execute("PRAGMA data_version").fetchone()
        try:  # after the first read: reading a ledger in WAL mode may create its log
            log = os.stat(f"{self._path}-wal")
            log_state: tuple[int, int] | None = (log.st_size, log.st_mtime_ns)
        except FileNotFoundError:
            log_state = None
        return identity, log_state, data_version

    def _forget_connection(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        self._watcher, self._watched = None, None

    def _read_names(self) -> _NameTable:
        assert self._watcher is not None  # the version was just read on it
        try:
            rows = self._watcher.execute(_ALL_NAMES, (_INDEXED,)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a ledger no ingestion run has written to yet
                return _NameTable([])
            raise
        return _NameTable(rows)

    def failed(self, include_skipped: bool = False) -> list[FailedEntry]:
        """Files that could not be indexed, with the reason; for administrators only (the
        caller checks the role: this view ignores ACLs)."""
        statuses = ("failed", "skipped") if include_skipped else ("failed",)
        marks = ", ".join("?" for _ in statuses)
        rows = self._rows(
            f"SELECT path, doc_id, status, error, updated_at FROM files WHERE status IN ({marks})",
            statuses,
        )
        entries = [
            FailedEntry(
                path=path,
                folder=str(PurePath(path).parent),
                name=PurePath(path).name,
                status=status,
                error=error or "no reason recorded",
                at=_utc(updated_at),
                doc_id=doc_id,
            )
            for path, doc_id, status, error, updated_at in rows
        ]
        return sorted(entries, key=lambda e: (e.folder.casefold(), e.name.casefold(), e.path))

    def index_model(self) -> str | None:
        """The embedding model the index was built with (None: no ingestion run yet)."""
        rows = self._rows("SELECT value FROM index_facts WHERE name = ?", (EMBEDDER_FACT,))
        if rows:
            return str(rows[0][0])
        indexed = self._rows("SELECT 1 FROM files WHERE status = ? LIMIT 1", (_INDEXED,))
        return UNRECORDED_MODEL if indexed else None

    def _rows(self, query: str, parameters: tuple[object, ...]) -> list[tuple[Any, ...]]:
        if not self._path.is_file():
            return []
        database = _read_only(self._path)
        try:
            return database.execute(query, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a ledger no ingestion run has written to yet
                return []
            raise
        finally:
            database.close()


class _Definition:
    """One (short, long) name and the files that define it."""

    def __init__(self, short: str, long: str, short_lowered: str, long_lowered: str) -> None:
        self.short, self.long = short, long
        self.lowered = (short_lowered, long_lowered)
        self.short_folded = _folded(short)
        self.long_words = folded_words(long)
        self.long_spelled = f" {' '.join(self.long_words)} "
        # (row position, readers) of the first defining file with each distinct ACL, in
        # row order: a later file with the same ACL cannot come first for any scope.
        self.defined_by: list[tuple[int, frozenset[str]]] = []
        self._acls: set[frozenset[str]] = set()

    def add(self, position: int, readers: frozenset[str]) -> None:
        if readers not in self._acls:
            self._acls.add(readers)
            self.defined_by.append((position, readers))

    def first_readable(self, scope: Scope) -> int | None:
        """The row position of the first defining file the scope may read; None if none."""
        if scope.unrestricted:
            return self.defined_by[0][0]
        for position, readers in self.defined_by:
            if not readers.isdisjoint(scope.principals):
                return position
        return None


class _NameTable:
    """Every abbreviation the indexed files define, found by the words of a query that can
    use it: its own folded form, or the first word of its full name."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        definitions: dict[tuple[str, str], _Definition] = {}
        readers_of: dict[str, frozenset[str]] = {}
        for position, (short, long, short_lowered, long_lowered, acl) in enumerate(rows):
            if not (isinstance(short, str) and isinstance(long, str)):
                continue
            if not is_abbreviation(short):
                continue
            definition = definitions.get((short, long))
            if definition is None:
                definition = _Definition(short, long, short_lowered, long_lowered)
                definitions[(short, long)] = definition
            if acl not in readers_of:
                readers_of[acl] = frozenset(json.loads(acl))
            definition.add(position, readers_of[acl])
        self._by_word: dict[str, list[_Definition]] = {}
        self._by_token: dict[str, list[_Definition]] = {}  # short forms under 3 characters
        self._always: list[_Definition] = []  # full names without a word
        for definition in definitions.values():
            if len(definition.short) < 3:
                self._by_token.setdefault(definition.short, []).append(definition)
            else:
                self._by_word.setdefault(definition.short_folded, []).append(definition)
            if definition.long_words:
                self._by_word.setdefault(definition.long_words[0], []).append(definition)
            else:
                self._always.append(definition)

    def used_in(self, scope: Scope, query: str) -> list[tuple[str, str]]:
        lowered = query.lower()
        tokens = query.split()
        words = folded_words(query)
        joined = f" {' '.join(words)} "
        candidates: dict[int, _Definition] = {}
        for found in (
            *(self._by_word.get(word, ()) for word in dict.fromkeys(words)),
            *(self._by_token.get(token, ()) for token in dict.fromkeys(tokens)),
            self._always,
        ):
            for definition in found:
                candidates[id(definition)] = definition
        typed_words = set(words)
        used: list[tuple[int, str, str]] = []
        for definition in candidates.values():
            short_lowered, long_lowered = definition.lowered
            # The ledger's own test: either form, in SQLite's lowercase, inside the query.
            if short_lowered not in lowered and long_lowered not in lowered:
                continue
            if len(definition.short) < 3:
                typed = definition.short in tokens
            else:
                typed = definition.short_folded in typed_words
            if not (typed or definition.long_spelled in joined):
                continue
            position = definition.first_readable(scope)
            if position is not None:
                used.append((position, definition.short, definition.long))
        return [(short, long) for _, short, long in sorted(used)]


def _read_only(path: Path) -> sqlite3.Connection:
    uri = path.resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)


def _entry(row: tuple[Any, ...]) -> CatalogEntry:
    path, doc_id, pages, chunks, status, parser, updated_at = row
    location = PurePath(path)
    return CatalogEntry(
        path=path,
        folder=str(location.parent),
        name=location.name,
        file_type=location.suffix.lower().lstrip("."),
        pages=int(pages),
        chunks=int(chunks),
        status=str(status),
        parser=parser,
        indexed_at=_utc(updated_at),
        doc_id=doc_id,
    )


def _folded(word: str) -> str:
    return " ".join(folded_words(word))


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(float(timestamp), tz=UTC)
