"""A rare exact code in a question finds the one passage holding it among near-duplicates.

Real parts: the embedder from its local folder, both Qdrant engines (the embedded one and
qdrant-client's local mode standing in for the server), the BM25 keyword encoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from qdrant_client import QdrantClient

from retrieval.access import EVERYONE, Scope
from retrieval.edge_store import EdgeStore
from retrieval.models import Chunk, chunk_id, document_id
from retrieval.retriever import Retriever
from retrieval.server_store import QdrantServerStore
from retrieval.sparse import SparseEncoder
from retrieval.store import VectorStore
from tests.retrieval.near_duplicates import Record, make_records, questions, with_the_reported_code

SPARSE = SparseEncoder(["en", "fr", "de"])
RECORDS = with_the_reported_code(make_records())
REPORTED = "record amended new reference AMEND-4711"


def record_chunk(record: Record) -> Chunk:
    path = f"/share/register/{record.file_name}"
    doc = document_id(path)
    return Chunk(
        id=chunk_id(doc, 0),
        doc_id=doc,
        ordinal=0,
        text=record.text,
        path=path,
        title=f"Register entry {record.number}",
        language="en",
        content_sha256="0" * 64,
        acl=frozenset({EVERYONE}),
        mtime=1700000000.0,
    )


@pytest.fixture(scope="module", params=["embedded", "server"])
def register(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, embedder: Any
) -> Iterator[Retriever]:
    folder = tmp_path_factory.mktemp(request.param)
    store: VectorStore
    if request.param == "embedded":
        store = EdgeStore(folder / "edge", SPARSE, linger_seconds=60)
    else:
        store = QdrantServerStore(QdrantClient(path=str(folder)), "chunks", "local", SPARSE)
    chunks = [record_chunk(record) for record in RECORDS]
    store.ensure_collection(embedder.dimension)
    store.upsert(chunks, embedder.embed_documents([c.embedding_text() for c in chunks]))
    store.optimize()
    yield Retriever(embedder, store, SPARSE)
    store.close()


def rank_of(retriever: Retriever, question: str, holder: Record, k: int = 10) -> int | None:
    hits = retriever.search(question, Scope.operator(), k)
    texts = [hit.chunk.text for hit in hits]
    return texts.index(holder.text) + 1 if holder.text in texts else None


def test_the_reported_code_inside_a_sentence_comes_first(register: Retriever) -> None:
    holder = next(record for record in RECORDS if record.reference == "AMEND-4711")
    assert rank_of(register, "AMEND-4711", holder) == 1
    assert rank_of(register, REPORTED, holder) == 1


@pytest.mark.parametrize(("question", "holder"), questions(RECORDS, 9))
def test_a_code_inside_a_sentence_finds_its_record_first(
    register: Retriever, question: str, holder: Record
) -> None:
    assert rank_of(register, question, holder) == 1


def test_a_question_without_a_code_is_still_answered_by_meaning(register: Retriever) -> None:
    """No rare token: the exact-match signal must not take over (nothing to assert on
    rank one among near-duplicates, but the register's wording still finds register entries)."""
    hits = register.search(
        "which product codes were assigned by the claims unit", Scope.operator(), 5
    )
    assert len(hits) == 5
    assert all("claims unit" in hit.chunk.text for hit in hits[:3])
