"""Composition of the retrieval side from the settings: the one place adapters are chosen."""

from __future__ import annotations

from retrieval.edge_store import EdgeStore
from retrieval.embedder import Embedder, SentenceTransformerEmbedder
from retrieval.retriever import Retriever
from retrieval.store import VectorStore
from settings import Settings


def build_store(settings: Settings) -> VectorStore:
    if settings.qdrant.url:
        from retrieval.server_store import QdrantServerStore

        api_key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
        return QdrantServerStore.connect(settings.qdrant.url, api_key, settings.qdrant.collection)
    return EdgeStore(settings.index_dir / settings.qdrant.collection)


def build_embedder(settings: Settings) -> Embedder:
    return SentenceTransformerEmbedder(
        settings.embedder_dir, settings.embedder.batch_size, settings.embedder.precision
    )


def build_retriever(settings: Settings) -> Retriever:
    return Retriever(build_embedder(settings), build_store(settings))
