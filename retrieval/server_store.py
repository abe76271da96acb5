"""The vector store on a Qdrant server (the appliance's `qdrant` service), via qdrant-client.

Tests hand it qdrant-client's local mode (`QdrantClient(path=...)`), which speaks the same
API, since no Qdrant server binary runs on the build machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from retrieval.access import Scope
from retrieval.errors import StoreUnavailable
from retrieval.models import Chunk, Hit
from retrieval.sparse import SparseEncoder
from retrieval.store import (
    FLOAT_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    DocumentVersion,
    SearchFilters,
    SearchQuery,
    candidates,
    chunk_from_payload,
    chunk_payload,
    cosine,
)

DENSE = "dense"
SPARSE = "bm25"


class QdrantServerStore:
    def __init__(
        self, client: QdrantClient, collection: str, location: str, sparse: SparseEncoder
    ) -> None:
        self._client = client
        self._collection = collection
        self._location = location
        self._sparse = sparse

    @classmethod
    def connect(
        cls, url: str, api_key: str | None, collection: str, sparse: SparseEncoder
    ) -> QdrantServerStore:
        client = QdrantClient(url=url, api_key=api_key, timeout=30, check_compatibility=False)
        return cls(client, collection, url, sparse)

    def ensure_collection(self, dimension: int) -> None:
        try:
            if self._client.collection_exists(self._collection):
                self._check_format()
                return
            self._client.create_collection(
                self._collection,
                vectors_config={
                    DENSE: qm.VectorParams(size=dimension, distance=qm.Distance.COSINE)
                },
                sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            )
            indexes = [
                *((field, qm.PayloadSchemaType.KEYWORD) for field in KEYWORD_FIELDS),
                *((field, qm.PayloadSchemaType.INTEGER) for field in INTEGER_FIELDS),
                *((field, qm.PayloadSchemaType.FLOAT) for field in FLOAT_FIELDS),
            ]
            for field, schema in indexes:
                self._client.create_payload_index(self._collection, field, schema)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"Qdrant at {self._location}: {exc}") from exc

    def _check_format(self) -> None:
        info = self._client.get_collection(self._collection)
        if SPARSE not in (info.config.params.sparse_vectors or {}):
            raise StoreUnavailable(
                f"collection {self._collection!r} at {self._location} predates keyword "
                "search; rebuild it: `rag ingest --rebuild PATH...`"
            )

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        if not chunks:
            return
        points = [
            qm.PointStruct(
                id=chunk.id, vector=self._vectors(chunk, vector), payload=chunk_payload(chunk)
            )
            for chunk, vector in zip(chunks, vectors, strict=True)
        ]
        self._client.upsert(self._collection, points=points, wait=True)

    def replace_documents(self, versions: Sequence[DocumentVersion]) -> None:
        # Upserts first, then trims: a search in between may see an old tail beside the new
        # chunks, never a document missing.
        self.upsert(
            [chunk for v in versions for chunk in v.chunks],
            [vector for v in versions for vector in v.vectors],
        )
        for version in versions:
            self.delete_document(version.doc_id, from_ordinal=len(version.chunks))

    def delete_document(self, doc_id: str, from_ordinal: int = 0) -> int:
        if not self._exists():
            return 0
        selector = qm.Filter(
            must=[
                qm.FieldCondition(key="doc_id", match=qm.MatchValue(value=doc_id)),
                qm.FieldCondition(key="ordinal", range=qm.Range(gte=from_ordinal)),
            ]
        )
        self._client.delete(
            self._collection, points_selector=qm.FilterSelector(filter=selector), wait=True
        )
        return self._client.count(self._collection, count_filter=selector, exact=True).count

    def set_acl(self, doc_id: str, acl: frozenset[str]) -> None:
        self._client.set_payload(
            self._collection,
            payload={"acl": sorted(acl)},
            points=_match("doc_id", doc_id),
            wait=True,
        )

    def search(
        self, query: SearchQuery, scope: Scope, k: int, filters: SearchFilters | None = None
    ) -> list[Hit]:
        if scope.sees_nothing or k <= 0 or not self._exists():
            return []
        selection = _selection(scope, filters or SearchFilters())
        sparse = self._sparse.query(query.text)
        limit = candidates(k)
        prefetches = [
            qm.Prefetch(query=list(query.vector), using=DENSE, filter=selection, limit=limit)
        ]
        if sparse.indices:
            prefetches.append(
                qm.Prefetch(
                    query=qm.SparseVector(indices=sparse.indices, values=sparse.values),
                    using=SPARSE,
                    filter=selection,
                    limit=limit,
                )
            )
        response = self._client.query_points(
            self._collection,
            prefetch=prefetches,
            query=qm.FusionQuery(fusion=qm.Fusion.RRF),
            query_filter=selection,
            limit=k,
            with_payload=True,
            with_vectors=[DENSE],
        )
        return [
            Hit(
                chunk=chunk_from_payload(str(p.id), p.payload or {}),
                score=float(p.score),
                similarity=cosine(query.vector, _dense(p.vector)),
            )
            for p in response.points
        ]

    def document_chunks(self, doc_id: str) -> list[tuple[Chunk, list[float]]]:
        if not self._exists():
            return []
        found: list[tuple[Chunk, list[float]]] = []
        offset = None
        while True:
            records, offset = self._client.scroll(
                self._collection,
                scroll_filter=_match("doc_id", doc_id),
                limit=256,
                offset=offset,
                with_payload=True,
                with_vectors=[DENSE],
            )
            for record in records:
                chunk = chunk_from_payload(str(record.id), record.payload or {})
                found.append((chunk, _dense(record.vector)))
            if offset is None:
                break
        return sorted(found, key=lambda pair: pair[0].ordinal)

    def count(self, doc_id: str | None = None) -> int:
        if not self._exists():
            return 0
        selector = _match("doc_id", doc_id) if doc_id else None
        return self._client.count(self._collection, count_filter=selector, exact=True).count

    def term_frequencies(
        self, terms: Sequence[int], scope: Scope, cap: int, filters: SearchFilters | None = None
    ) -> dict[int, int]:
        if not terms or scope.sees_nothing or not self._exists():
            return dict.fromkeys(terms, 0)
        selection = _selection(scope, filters or SearchFilters())
        requests = [
            qm.QueryRequest(
                query=qm.SparseVector(indices=[term], values=[1.0]),
                using=SPARSE,
                filter=selection,
                limit=cap,
            )
            for term in terms
        ]
        found = self._client.query_batch_points(self._collection, requests=requests)
        return {term: len(r.points) for term, r in zip(terms, found, strict=True)}

    def drop(self) -> None:
        if self._exists():
            self._client.delete_collection(self._collection)

    def optimize(self) -> None:
        """The server builds its indexes in the background."""

    def describe(self) -> dict[str, Any]:
        return {"engine": "qdrant server", "location": self._location}

    def _vectors(self, chunk: Chunk, vector: Sequence[float]) -> dict[str, Any]:
        named: dict[str, Any] = {DENSE: list(vector)}
        sparse = self._sparse.document(chunk.embedding_text(), chunk.language)
        if sparse.indices:
            named[SPARSE] = qm.SparseVector(indices=sparse.indices, values=sparse.values)
        return named

    def close(self) -> None:
        self._client.close()

    def _exists(self) -> bool:
        try:
            return bool(self._client.collection_exists(self._collection))
        except Exception as exc:
            raise StoreUnavailable(f"Qdrant at {self._location}: {exc}") from exc


def _selection(scope: Scope, filters: SearchFilters) -> qm.Filter | None:
    must: list[Any] = [
        qm.FieldCondition(key=key, match=qm.MatchValue(value=value))
        for key, value in filters.keywords().items()
    ]
    if filters.modified_after is not None or filters.modified_before is not None:
        must.append(
            qm.FieldCondition(
                key="mtime", range=qm.Range(gte=filters.modified_after, lt=filters.modified_before)
            )
        )
    if not scope.unrestricted:
        principals = sorted(scope.principals)
        must.append(qm.FieldCondition(key="acl", match=qm.MatchAny(any=principals)))
    return qm.Filter(must=must) if must else None


def _dense(vector: Any) -> list[float]:
    named: dict[str, Any] = vector if isinstance(vector, dict) else {}
    return [float(x) for x in named.get(DENSE) or []]


def _match(key: str, value: str) -> qm.Filter:
    return qm.Filter(must=[qm.FieldCondition(key=key, match=qm.MatchValue(value=value))])
