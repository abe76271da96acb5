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
"DSGVO"), not self-references such as "the Regulation".
"""

from __future__ import annotations

import json
import re
import sqlite3
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
_NAMES_IN = (
    "SELECT DISTINCT json_extract(n.value, '$[0]'), json_extract(n.value, '$[1]') "
    "FROM files, json_each(files.profile, '$.names') AS n "
    "WHERE files.status = ? AND files.profile IS NOT NULL "
    "AND (instr(?, lower(json_extract(n.value, '$[0]'))) > 0 "
    "OR instr(?, lower(json_extract(n.value, '$[1]'))) > 0)"
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
        abbreviation as one of its words, or a full name as a run of its words."""
        if scope.sees_nothing or not query.strip():
            return []
        lowered = query.lower()
        statement = _NAMES_IN
        parameters: tuple[object, ...] = (_INDEXED, lowered, lowered)
        if not scope.unrestricted:
            statement += f" AND {_READABLE}"
            parameters += (json.dumps(sorted(scope.principals)),)
        words = folded_words(query)
        joined = f" {' '.join(words)} "
        found: dict[tuple[str, str], None] = {}
        for short, long in self._rows(statement, parameters):
            if not (isinstance(short, str) and isinstance(long, str)):
                continue
            if not is_abbreviation(short):
                continue
            typed = short in query.split() if len(short) < 3 else _folded(short) in words
            spelled = f" {' '.join(folded_words(long))} " in joined
            if typed or spelled:
                found[(short, long)] = None
        return list(found)

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
        uri = self._path.resolve().as_uri() + "?mode=ro"
        database = sqlite3.connect(uri, uri=True, timeout=30)
        try:
            return database.execute(query, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a ledger no ingestion run has written to yet
                return []
            raise
        finally:
            database.close()


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
