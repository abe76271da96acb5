"""The vector store on a Qdrant server (the appliance's `qdrant` service), via qdrant-client.

Tests hand it qdrant-client's local mode (`QdrantClient(path=...)`), which speaks the same
API, since no Qdrant server binary runs on the build machines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from retrieval.access import Scope
from retrieval.errors import StoreUnavailable
from retrieval.fusion import Candidate, fuse
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
)

DENSE = "dense"
SPARSE = "bm25"
_BACKUP_FILE = "store.json"
_POINTS_FILE = "points.jsonl"
_BACKUP_FORMAT = "qdrant points (JSON lines)"


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
            self._create(self._collection, dimension)
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"Qdrant at {self._location}: {exc}") from exc

    def _create(self, name: str, dimension: int) -> None:
        self._client.create_collection(
            name,
            vectors_config={DENSE: qm.VectorParams(size=dimension, distance=qm.Distance.COSINE)},
            sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
        )
        indexes = [
            *((field, qm.PayloadSchemaType.KEYWORD) for field in KEYWORD_FIELDS),
            *((field, qm.PayloadSchemaType.INTEGER) for field in INTEGER_FIELDS),
            *((field, qm.PayloadSchemaType.FLOAT) for field in FLOAT_FIELDS),
        ]
        for field, schema in indexes:
            self._client.create_payload_index(name, field, schema)

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
        requests = [
            qm.QueryRequest(
                query=list(query.vector),
                using=DENSE,
                filter=selection,
                limit=limit,
                with_payload=True,
                with_vector=[DENSE],
            )
        ]
        if sparse.indices:
            requests.append(
                qm.QueryRequest(
                    query=qm.SparseVector(indices=sparse.indices, values=sparse.values),
                    using=SPARSE,
                    filter=selection,
                    limit=limit,
                    with_payload=True,
                    with_vector=[DENSE],
                )
            )
        found = self._client.query_batch_points(self._collection, requests=requests)
        by_vector = [_candidate(p, 0.0) for p in found[0].points]
        by_keywords = (
            [_candidate(p, float(p.score)) for p in found[1].points] if sparse.indices else []
        )
        return fuse(query.text, query.vector, [*by_vector, *by_keywords], k)

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
            physical = self._physical_name()
            if physical != self._collection:
                self._client.update_collection_aliases(
                    change_aliases_operations=[_delete_alias(self._collection)]
                )
            self._client.delete_collection(physical)

    def optimize(self) -> None:
        """The server builds its indexes in the background."""

    def compact(self) -> None:
        """Copies the live chunks into a new collection, points the collection's name (an
        alias) at it and deletes the old one, write-ahead log and segments included.

        The first compaction of a collection created under the name itself deletes it
        before the alias can take the name: searches in that instant find nothing."""
        if not self._exists():
            return
        old = self._physical_name()
        new = f"{self._collection}-{time.time_ns()}"
        self._create(new, self._dimension(old))
        for points in self._batches(old):
            self._client.upsert(new, points=points, wait=True)
        if old == self._collection:  # no alias yet: the name must be free for one
            self._client.delete_collection(old)
            switch: list[Any] = [_create_alias(self._collection, new)]
        else:
            switch = [_delete_alias(self._collection), _create_alias(self._collection, new)]
        self._client.update_collection_aliases(change_aliases_operations=switch)
        if old != self._collection:
            self._client.delete_collection(old)

    def backup(self, folder: Path) -> dict[str, Any]:
        """Every point with its vectors and payload as JSON lines (the server's own snapshot
        files are on its volume; `rag backup` keeps one portable copy with the rest)."""
        if not self._exists():
            raise StoreUnavailable(f"no collection {self._collection!r} at {self._location}")
        physical = self._physical_name()
        count = 0
        with open(folder / _POINTS_FILE, "w", encoding="utf-8") as out:
            for points in self._batches(physical):
                for point in points:
                    out.write(json.dumps(_point_record(point)) + "\n")
                    count += 1
        described = {
            "engine": "qdrant server",
            "format": _BACKUP_FORMAT,
            "points": count,
            "dimension": self._dimension(physical),
        }
        (folder / _BACKUP_FILE).write_text(json.dumps(described))
        return described

    def restore(self, folder: Path) -> None:
        try:
            described = json.loads((folder / _BACKUP_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise StoreUnavailable(f"{folder} is not a backup of the index: {exc}") from exc
        if described.get("format") != _BACKUP_FORMAT:
            raise StoreUnavailable(
                f"the backup in {folder} holds {described.get('format')!r}, not a Qdrant "
                "server's points; restore it with the store it was taken from "
                "(RAG_QDRANT__URL set or not)"
            )
        self.drop()
        self.ensure_collection(int(described["dimension"]))
        with open(folder / _POINTS_FILE, encoding="utf-8") as source:
            batch: list[qm.PointStruct] = []
            for line in source:
                batch.append(_point_from_record(json.loads(line)))
                if len(batch) == 256:
                    self._client.upsert(self._collection, points=batch, wait=True)
                    batch = []
            if batch:
                self._client.upsert(self._collection, points=batch, wait=True)

    def _physical_name(self) -> str:
        """The collection the name points at: itself, or the target of its alias."""
        for alias in self._client.get_aliases().aliases:
            if alias.alias_name == self._collection:
                return alias.collection_name
        return self._collection

    def _dimension(self, name: str) -> int:
        vectors = self._client.get_collection(name).config.params.vectors
        assert isinstance(vectors, dict)
        return int(vectors[DENSE].size)

    def _batches(self, name: str) -> Iterator[list[qm.PointStruct]]:
        offset = None
        while True:
            records, offset = self._client.scroll(
                name, limit=256, offset=offset, with_payload=True, with_vectors=True
            )
            yield [
                qm.PointStruct(id=r.id, vector=_named(r.vector), payload=r.payload) for r in records
            ]
            if offset is None:
                return

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
    if scope.unrestricted:
        return qm.Filter(must=must) if must else None
    must.append(qm.FieldCondition(key="acl", match=qm.MatchAny(any=sorted(scope.principals))))
    refused = qm.FieldCondition(key="acl", match=qm.MatchAny(any=sorted(scope.denials)))
    return qm.Filter(must=must, must_not=[refused])


def _candidate(point: qm.ScoredPoint, keyword_score: float) -> Candidate:
    return Candidate.from_payload(
        str(point.id), point.payload or {}, _dense(point.vector), keyword_score
    )


def _dense(vector: Any) -> list[float]:
    named: dict[str, Any] = vector if isinstance(vector, dict) else {}
    return list(named.get(DENSE) or [])  # the engine hands over Python floats


def _create_alias(alias: str, collection: str) -> qm.CreateAliasOperation:
    return qm.CreateAliasOperation(
        create_alias=qm.CreateAlias(collection_name=collection, alias_name=alias)
    )


def _delete_alias(alias: str) -> qm.DeleteAliasOperation:
    return qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias))


def _named(vector: Any) -> dict[str, Any]:
    return dict(vector) if isinstance(vector, dict) else {}


def _point_record(point: qm.PointStruct) -> dict[str, Any]:
    vectors = point.vector if isinstance(point.vector, dict) else {}
    sparse = vectors.get(SPARSE)
    return {
        "id": str(point.id),
        "payload": point.payload,
        "dense": vectors.get(DENSE),
        "sparse": (
            {"indices": list(sparse.indices), "values": list(sparse.values)}
            if isinstance(sparse, qm.SparseVector)
            else None
        ),
    }


def _point_from_record(record: dict[str, Any]) -> qm.PointStruct:
    vectors: dict[str, Any] = {DENSE: record["dense"]}
    if record.get("sparse"):
        vectors[SPARSE] = qm.SparseVector(**record["sparse"])
    return qm.PointStruct(id=record["id"], vector=vectors, payload=record["payload"])


def _match(key: str, value: str) -> qm.Filter:
    return qm.Filter(must=[qm.FieldCondition(key=key, match=qm.MatchValue(value=value))])
