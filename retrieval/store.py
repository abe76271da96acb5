"""Where chunks and their vectors live."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from retrieval.access import Scope
from retrieval.models import Chunk, Hit

# Payload keys that can be matched exactly by `search(filters=...)`.
FILTERABLE_KEYS = frozenset({"doc_id", "path", "title"})


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
    - `search(vector, scope, k, filters)` returns at most k hits, best first, only among the
      chunks the scope may read; a scope with no principals returns nothing. The access
      filter runs inside the engine's query, never as post-filtering. `filters` match payload
      keys from FILTERABLE_KEYS exactly.
    - `replace_documents(versions)` makes each version's chunks its document's only chunks:
      upserts them and removes the document's chunks beyond the new last ordinal, for a
      whole batch of documents in one write. Searches never see a document missing; where
      the engine allows (the embedded one), they see the old versions or the new ones,
      never a mix.
    - `document_chunks(doc_id)` returns the document's chunks with their vectors, by ordinal:
      a copy or a move of a file reuses them instead of parsing it again.
    - `count(doc_id=None)` counts chunks, of one document or all.
    - `set_acl(doc_id, acl)` replaces the principals of every chunk of a document.
    """

    def ensure_collection(self, dimension: int) -> None: ...

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None: ...

    def delete_document(self, doc_id: str, from_ordinal: int = 0) -> int: ...

    def replace_documents(self, versions: Sequence[DocumentVersion]) -> None: ...

    def search(
        self,
        vector: Sequence[float],
        scope: Scope,
        k: int,
        filters: Mapping[str, str] | None = None,
    ) -> list[Hit]: ...

    def document_chunks(self, doc_id: str) -> list[tuple[Chunk, list[float]]]: ...

    def count(self, doc_id: str | None = None) -> int: ...

    def set_acl(self, doc_id: str, acl: frozenset[str]) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def chunk_payload(chunk: Chunk) -> dict[str, Any]:
    payload = chunk.model_dump(exclude={"id"})
    payload["acl"] = sorted(chunk.acl)
    return payload


def chunk_from_payload(point_id: str, payload: Mapping[str, Any]) -> Chunk:
    data = dict(payload)
    data["acl"] = frozenset(data.get("acl", ()))
    return Chunk(id=str(point_id), **data)


def check_filters(filters: Mapping[str, str] | None) -> Mapping[str, str]:
    filters = filters or {}
    unknown = set(filters) - FILTERABLE_KEYS
    if unknown:
        raise ValueError(f"unknown filter keys {sorted(unknown)}; use {sorted(FILTERABLE_KEYS)}")
    return filters
