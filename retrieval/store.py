"""Where chunks and their vectors live."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from retrieval.access import Scope
from retrieval.models import Chunk, Hit

# How many candidates each half of a hybrid search contributes before fusion, per hit asked.
CANDIDATES_PER_HIT = 4
MIN_CANDIDATES = 40


@dataclass(frozen=True)
class SearchQuery:
    """A query as both halves of hybrid search need it: its text and its dense vector."""

    text: str
    vector: Sequence[float]


@dataclass(frozen=True)
class SearchFilters:
    """Narrowing a search, always on top of the access filter.

    `folder` keeps files under that folder (an absolute path, matched on whole names);
    `file_type` an extension (`pdf`); `language` an ISO 639-1 code; `modified_after` and
    `modified_before` bound the file's modification time (seconds since the epoch);
    `doc_id` and `path` pick one document.
    """

    folder: str | None = None
    file_type: str | None = None
    language: str | None = None
    modified_after: float | None = None
    modified_before: float | None = None
    doc_id: str | None = None
    path: str | None = None

    def keywords(self) -> dict[str, str]:
        """The conditions that match a payload keyword exactly."""
        pairs = {
            "folders": self.folder.rstrip("/") or "/" if self.folder else None,
            "file_type": self.file_type.lower().lstrip(".") if self.file_type else None,
            "language": self.language.lower() if self.language else None,
            "doc_id": self.doc_id,
            "path": self.path,
        }
        return {key: value for key, value in pairs.items() if value is not None}

    @classmethod
    def parse(cls, pairs: Sequence[str]) -> SearchFilters:
        """Filters from `KEY=VALUE` strings (the CLI's `--filter`), with one clear error.

        Keys: folder (absolute path), type (extension), language (ISO 639-1), and
        modified_after / modified_before (YYYY-MM-DD or an ISO date-time; UTC unless the
        value names its zone)."""
        values: dict[str, Any] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not value:
                raise ValueError(f"filter {pair!r} is not KEY=VALUE")
            if key not in _FILTER_KEYS:
                raise ValueError(f"unknown filter {key!r}; use one of {', '.join(_FILTER_KEYS)}")
            field = _FILTER_KEYS[key]
            if field in values:
                raise ValueError(f"filter {key!r} given twice")
            if field == "folder" and not value.startswith("/"):
                raise ValueError(f"folder filter {value!r} must be an absolute path")
            values[field] = _epoch(key, value) if field.startswith("modified") else value
        return cls(**values)


_FILTER_KEYS = {
    "folder": "folder",
    "type": "file_type",
    "language": "language",
    "modified_after": "modified_after",
    "modified_before": "modified_before",
}


def _epoch(key: str, value: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"filter {key}={value!r}: give a date as YYYY-MM-DD") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class DocumentVersion:
    """A document's complete set of chunks, with one vector per chunk."""

    doc_id: str
    chunks: Sequence[Chunk]
    vectors: Sequence[Sequence[float]]


class VectorStore(Protocol):
    """The vector index of chunks. Every implementation passes tests/contract/test_store.py.

    - `ensure_collection(dimension)` creates the collection when missing; idempotent.
    - `upsert(chunks, vectors)` writes chunks with their vectors; a chunk id that exists is
      overwritten. Durable on return: a crash afterwards loses nothing.
    - `delete_document(doc_id, from_ordinal=0)` removes the document's chunks whose ordinal is
      at least `from_ordinal` (all of them by default) and returns how many of those remain
      (0 when the deletion is complete). A re-ingested document that got shorter upserts its
      new chunks, then trims the old tail, so it never vanishes from search meanwhile.
    - `search(query, scope, k, filters)` returns at most k hits, best first, only among the
      chunks the scope may read (`Scope.may_read`) and `filters` select; a scope with no
      principals returns nothing. Hybrid: the engine finds the nearest passages by vector
      and the best by BM25 keywords, the access filter and `filters` running inside both,
      never as post-filtering; retrieval/fusion.py scores them into one order (the same for
      every store; equal scores in chunk id order). Each hit carries its cosine `similarity`.
    - `replace_documents(versions)` makes each version's chunks its document's only chunks:
      upserts them and removes the document's chunks beyond the new last ordinal, for a
      whole batch of documents in one write. Searches never see a document missing; where
      the engine allows (the embedded one), they see the old versions or the new ones,
      never a mix.
    - `document_chunks(doc_id)` returns the document's chunks with their vectors, by ordinal:
      a copy or a move of a file reuses them instead of parsing it again.
    - `count(doc_id=None)` counts chunks, of one document or all.
    - `set_acl(doc_id, acl)` replaces the principals of every chunk of a document.
    - `term_frequencies(terms, scope, cap, filters)` counts the chunks the scope may read (and
      `filters` select) that hold each keyword term (an index of the BM25 vectors), up to
      `cap`: how rare a question's words are among the user's documents, or whether one
      document mentions them.
    - `drop()` deletes the collection with every chunk; `ensure_collection` makes it anew.
    - `optimize()` builds the search indexes of what was written, where the engine leaves
      that to its caller; ingestion calls it at the end of a run.
    - `compact()` rewrites the collection from its live chunks, so that no file of the
      engine (write-ahead log, old segments) still holds a deleted chunk; erasure calls it.
      Searches go on meanwhile and give the same results.
    - `backup(folder)` writes a consistent copy of the collection into the empty `folder`
      and describes it (`engine`, `format`, `points`); `restore(folder)` replaces the
      collection with such a copy, or raises StoreUnavailable for another engine's copy.
    """

    def ensure_collection(self, dimension: int) -> None: ...

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None: ...

    def delete_document(self, doc_id: str, from_ordinal: int = 0) -> int: ...

    def replace_documents(self, versions: Sequence[DocumentVersion]) -> None: ...

    def search(
        self, query: SearchQuery, scope: Scope, k: int, filters: SearchFilters | None = None
    ) -> list[Hit]: ...

    def document_chunks(self, doc_id: str) -> list[tuple[Chunk, list[float]]]: ...

    def count(self, doc_id: str | None = None) -> int: ...

    def set_acl(self, doc_id: str, acl: frozenset[str]) -> None: ...

    def term_frequencies(
        self, terms: Sequence[int], scope: Scope, cap: int, filters: SearchFilters | None = None
    ) -> dict[int, int]: ...

    def drop(self) -> None: ...

    def optimize(self) -> None: ...

    def compact(self) -> None: ...

    def backup(self, folder: Path) -> dict[str, Any]: ...

    def restore(self, folder: Path) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def folders_above(path: str) -> list[str]:
    """The folders above a file's path, nearest first: `/srv/a/b.pdf` gives `/srv/a`, `/srv`
    and `/`; a share read over SMB keeps its scheme, `smb://fs1/docs/a/b.pdf` giving
    `smb://fs1/docs/a`, `smb://fs1/docs` and `smb://fs1`."""
    scheme, separator, rest = path.partition("://")
    if not separator:
        return [str(folder) for folder in PurePosixPath(path).parents]
    return [f"{scheme}://{folder}" for folder in PurePosixPath(rest).parents if str(folder) != "."]


def chunk_payload(chunk: Chunk) -> dict[str, Any]:
    payload = chunk.model_dump(exclude={"id"})
    payload["acl"] = sorted(chunk.acl)
    # Derived, for filters only: the folders above the file, and its type.
    payload["folders"] = folders_above(chunk.path)
    payload["file_type"] = chunk.file_type
    return payload


def chunk_from_payload(point_id: str, payload: Mapping[str, Any]) -> Chunk:
    data = {key: value for key, value in payload.items() if key not in _DERIVED}
    data["acl"] = frozenset(data.get("acl", ()))
    return Chunk(id=str(point_id), **data)


_DERIVED = ("folders", "file_type")

# Payload fields with an index: those the access filter, `SearchFilters` and the document
# operations match on.
KEYWORD_FIELDS = ("acl", "doc_id", "path", "folders", "file_type", "language")
INTEGER_FIELDS = ("ordinal",)
FLOAT_FIELDS = ("mtime",)


def candidates(k: int) -> int:
    return max(k * CANDIDATES_PER_HIT, MIN_CANDIDATES)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine of two unit vectors, as the engine computes it."""
    return float(sum(x * y for x, y in zip(a, b, strict=True)))
