"""The vector store on a Qdrant server (the appliance's `qdrant` service), via qdrant-client.

Tests hand it qdrant-client's local mode (`QdrantClient(path=...)`), which speaks the same
API, since no Qdrant server binary runs on the build machines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from retrieval.access import Scope
from retrieval.errors import StoreUnavailable
from retrieval.models import Chunk, Hit
from retrieval.store import DocumentVersion, check_filters, chunk_from_payload, chunk_payload

DENSE = "dense"
_KEYWORD_FIELDS = ("acl", "doc_id", "path")


class QdrantServerStore:
    def __init__(self, client: QdrantClient, collection: str, location: str) -> None:
        self._client = client
        self._collection = collection
        self._location = location

    @classmethod
    def connect(cls, url: str, api_key: str | None, collection: str) -> QdrantServerStore:
        client = QdrantClient(url=url, api_key=api_key, timeout=30, check_compatibility=False)
        return cls(client, collection, url)

    def ensure_collection(self, dimension: int) -> None:
        try:
            if self._client.collection_exists(self._collection):
                return
            self._client.create_collection(
                self._collection,
                vectors_config={
                    DENSE: qm.VectorParams(size=dimension, distance=qm.Distance.COSINE)
                },
            )
            for field in _KEYWORD_FIELDS:
                self._client.create_payload_index(
                    self._collection, field, qm.PayloadSchemaType.KEYWORD
                )
            self._client.create_payload_index(
                self._collection, "ordinal", qm.PayloadSchemaType.INTEGER
            )
        except Exception as exc:
            raise StoreUnavailable(f"Qdrant at {self._location}: {exc}") from exc

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        if not chunks:
            return
        points = [
            qm.PointStruct(id=chunk.id, vector={DENSE: list(vector)}, payload=chunk_payload(chunk))
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
        self,
        vector: Sequence[float],
        scope: Scope,
        k: int,
        filters: Mapping[str, str] | None = None,
    ) -> list[Hit]:
        filters = check_filters(filters)
        if scope.sees_nothing or k <= 0 or not self._exists():
            return []
        must: list[Any] = [
            qm.FieldCondition(key=key, match=qm.MatchValue(value=value))
            for key, value in filters.items()
        ]
        if not scope.unrestricted:
            principals = sorted(scope.principals)
            must.append(qm.FieldCondition(key="acl", match=qm.MatchAny(any=principals)))
        response = self._client.query_points(
            self._collection,
            query=list(vector),
            using=DENSE,
            query_filter=qm.Filter(must=must) if must else None,
            limit=k,
            with_payload=True,
        )
        return [
            Hit(chunk=chunk_from_payload(str(p.id), p.payload or {}), score=float(p.score))
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
                with_vectors=True,
            )
            for record in records:
                vector = record.vector.get(DENSE) if isinstance(record.vector, dict) else None
                chunk = chunk_from_payload(str(record.id), record.payload or {})
                found.append((chunk, list(vector or [])))  # type: ignore[arg-type]
            if offset is None:
                break
        return sorted(found, key=lambda pair: pair[0].ordinal)

    def count(self, doc_id: str | None = None) -> int:
        if not self._exists():
            return 0
        selector = _match("doc_id", doc_id) if doc_id else None
        return self._client.count(self._collection, count_filter=selector, exact=True).count

    def describe(self) -> dict[str, Any]:
        return {"engine": "qdrant server", "location": self._location}

    def close(self) -> None:
        self._client.close()

    def _exists(self) -> bool:
        try:
            return bool(self._client.collection_exists(self._collection))
        except Exception as exc:
            raise StoreUnavailable(f"Qdrant at {self._location}: {exc}") from exc


def _match(key: str, value: str) -> qm.Filter:
    return qm.Filter(must=[qm.FieldCondition(key=key, match=qm.MatchValue(value=value))])
