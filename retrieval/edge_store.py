"""The embedded vector store: the Qdrant engine in-process (qdrant-edge)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from retrieval.access import Scope
from retrieval.errors import StoreUnavailable
from retrieval.models import Chunk, Hit
from retrieval.store import DocumentVersion, check_filters, chunk_from_payload, chunk_payload

DENSE = "dense"
_KEYWORD_FIELDS = ("acl", "doc_id", "path")


class EdgeStore:
    """A Qdrant Edge shard in a local folder.

    A shard may be open in one process at a time, and the UI, the CLI and ingestion are
    separate processes; so each operation takes an exclusive lock on the folder, opens the
    shard, works and closes it (reopening is cheap: a fraction of a second at 100,000 chunks).
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    # -- shard lifecycle ------------------------------------------------------------------

    @contextmanager
    def _opened(self) -> Iterator[qe.EdgeShard]:
        self._path.mkdir(parents=True, exist_ok=True)
        with open(self._path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            shard = self._load()
            try:
                yield shard
            finally:
                shard.close()

    def _load(self) -> qe.EdgeShard:
        if not (self._path / "edge_config.json").exists():
            raise StoreUnavailable(f"no index at {self._path}; run `rag ingest PATH` to create it")
        try:
            return qe.EdgeShard.load(str(self._path))
        except Exception as exc:  # the engine raises plain exceptions with a message
            raise StoreUnavailable(f"cannot open the index at {self._path}: {exc}") from exc

    def close(self) -> None:
        """Nothing stays open between operations."""

    # -- VectorStore ----------------------------------------------------------------------

    def ensure_collection(self, dimension: int) -> None:
        if (self._path / "edge_config.json").exists():
            return
        self._path.mkdir(parents=True, exist_ok=True)
        with open(self._path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (self._path / "edge_config.json").exists():
                return
            config = qe.EdgeConfig(
                vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)}
            )
            shard = qe.EdgeShard.create(str(self._path), config)
            try:
                for field in _KEYWORD_FIELDS:
                    shard.update(
                        qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword)
                    )
                shard.update(
                    qe.UpdateOperation.create_field_index("ordinal", qe.PayloadSchemaType.Integer)
                )
                shard.flush()
            finally:
                shard.close()

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        points = _points(chunks, vectors)
        if not points:
            return
        with self._opened() as shard:
            shard.update(qe.UpdateOperation.upsert_points(points))
            shard.flush()

    def replace_documents(self, versions: Sequence[DocumentVersion]) -> None:
        batches = [(v.doc_id, _points(v.chunks, v.vectors)) for v in versions]
        # One lock for the batch: other processes search under the same lock, so they see
        # the old versions or the new ones.
        with self._opened() as shard:
            points = [point for _, document_points in batches for point in document_points]
            if points:
                shard.update(qe.UpdateOperation.upsert_points(points))
            for doc_id, document_points in batches:
                shard.update(
                    qe.UpdateOperation.delete_points_by_filter(_tail(doc_id, len(document_points)))
                )
            shard.flush()

    def delete_document(self, doc_id: str, from_ordinal: int = 0) -> int:
        if not self._exists():
            return 0
        selector = _tail(doc_id, from_ordinal)
        with self._opened() as shard:
            shard.update(qe.UpdateOperation.delete_points_by_filter(selector))
            shard.flush()
            return shard.count(qe.CountRequest(exact=True, filter=selector))

    def set_acl(self, doc_id: str, acl: frozenset[str]) -> None:
        with self._opened() as shard:
            shard.update(
                qe.UpdateOperation.set_payload_by_filter(
                    _match("doc_id", doc_id), {"acl": sorted(acl)}
                )
            )
            shard.flush()

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
            qe.FieldCondition(key, match=qe.MatchValue(value)) for key, value in filters.items()
        ]
        if not scope.unrestricted:
            must.append(qe.FieldCondition("acl", match=qe.MatchAny(sorted(scope.principals))))
        request = qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest(list(vector), using=DENSE),
            filter=qe.Filter(must=must) if must else None,
            with_payload=True,
        )
        with self._opened() as shard:
            points = shard.query(request)
        return [
            Hit(chunk=chunk_from_payload(str(p.id), p.payload or {}), score=float(p.score))
            for p in points
        ]

    def document_chunks(self, doc_id: str) -> list[tuple[Chunk, list[float]]]:
        if not self._exists():
            return []
        found: list[tuple[Chunk, list[float]]] = []
        offset = None
        with self._opened() as shard:
            while True:
                records, offset = shard.scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=256,
                        filter=_match("doc_id", doc_id),
                        with_payload=True,
                        with_vector=True,
                    )
                )
                for record in records:
                    vectors: dict[str, Any] = (
                        record.vector if isinstance(record.vector, dict) else {}
                    )
                    chunk = chunk_from_payload(str(record.id), record.payload or {})
                    found.append((chunk, [float(x) for x in vectors.get(DENSE, [])]))
                if offset is None:
                    break
        return sorted(found, key=lambda pair: pair[0].ordinal)

    def count(self, doc_id: str | None = None) -> int:
        if not self._exists():
            return 0
        selector = _match("doc_id", doc_id) if doc_id else None
        with self._opened() as shard:
            return shard.count(qe.CountRequest(exact=True, filter=selector))

    def describe(self) -> dict[str, Any]:
        return {"engine": "qdrant-edge (embedded)", "location": str(self._path.resolve())}

    def _exists(self) -> bool:
        return (self._path / "edge_config.json").exists()


def _points(chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> list[qe.Point]:
    if len(chunks) != len(vectors):
        raise ValueError("one vector per chunk")
    return [
        qe.Point(id=chunk.id, vector={DENSE: list(vector)}, payload=chunk_payload(chunk))
        for chunk, vector in zip(chunks, vectors, strict=True)
    ]


def _tail(doc_id: str, from_ordinal: int) -> qe.Filter:
    """The document's chunks whose ordinal is at least `from_ordinal`."""
    return qe.Filter(
        must=[
            qe.FieldCondition("doc_id", match=qe.MatchValue(doc_id)),
            qe.FieldCondition("ordinal", range=qe.RangeFloat(gte=from_ordinal)),
        ]
    )


def _match(key: str, value: str) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition(key, match=qe.MatchValue(value))])
