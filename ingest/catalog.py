"""The library: what the ledger holds, as a user may see it.

The UI may not import `ingest`, so this reads the ingest ledger's SQLite file itself, opened
read-only: the catalog never creates, locks for writing or changes the ledger. A ledger that
does not exist yet means an empty library.

A scope sees a file when the file's ACL shares at least one of the scope's principals and
denies none of them (`Scope.may_read`, the rule the vector store applies to chunks); the
operator's scope sees every file and an empty scope sees none. The ACL is applied in SQL, so
a path the scope may not read never leaves the database.

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
import re
import threading
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from ingest.ledger import LedgerReader
from retrieval.access import Scope


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


# Every name the indexed files define, each with the file's ACL (its entries, as a JSON
# list: the values `_READABLE` compares) and SQLite's lowercase of both forms (what the
# ledger's own matching used), in the ledger's row order.
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
        self._ledger = LedgerReader(ledger_path)
        self._names_lock = threading.Lock()
        self._names_table = _NameTable([])
        self._names_version: object = _UNREAD

    def documents(self, scope: Scope, name_contains: str = "") -> list[CatalogEntry]:
        """The indexed files the scope may read whose name contains `name_contains` (any
        case), sorted by folder, then name."""
        if scope.sees_nothing:
            return []
        if scope.unrestricted:
            rows = self._ledger.indexed_files()
        else:
            rows = self._ledger.indexed_files(sorted(scope.principals), sorted(scope.denials))
        wanted = name_contains.strip().casefold()
        entries = [_entry(row) for row in rows if wanted in PurePath(row[0]).name.casefold()]
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
            version = self._ledger.version()
            if version != self._names_version:
                rows = [] if version is None else self._ledger.defined_names()
                self._names_table = _NameTable(rows)
                self._names_version = version
            return self._names_table

    def failed(self, include_skipped: bool = False) -> list[FailedEntry]:
        """Files that could not be indexed, with the reason; for administrators only (the
        caller checks the role: this view ignores ACLs)."""
        statuses = ("failed", "skipped") if include_skipped else ("failed",)
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
            for path, doc_id, status, error, updated_at in self._ledger.files_in(statuses)
        ]
        return sorted(entries, key=lambda e: (e.folder.casefold(), e.name.casefold(), e.path))

    def index_model(self) -> str | None:
        """The embedding model the index was built with (None: no ingestion run yet)."""
        return self._ledger.index_model()


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
            if scope.may_read(readers):
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
