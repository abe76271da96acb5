"""Composition of the retrieval side from the settings: the one place adapters are chosen."""

from __future__ import annotations

from retrieval.edge_store import EdgeStore
from retrieval.embedder import SentenceTransformerEmbedder, TokenEmbedder
from retrieval.reranker import CrossEncoderReranker, LateInteractionReranker, Reranker
from retrieval.sparse import SparseEncoder
from retrieval.store import VectorStore
from settings import Settings


def build_sparse(settings: Settings) -> SparseEncoder:
    languages = [code.strip() for code in settings.retrieval.query_languages.split(",")]
    return SparseEncoder(code for code in languages if code)


def build_store(settings: Settings) -> VectorStore:
    sparse = build_sparse(settings)
    if settings.qdrant.url:
        from retrieval.server_store import QdrantServerStore

        api_key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
        return QdrantServerStore.connect(
            settings.qdrant.url, api_key, settings.qdrant.collection, sparse
        )
    return EdgeStore(
        settings.index_dir / settings.qdrant.collection, sparse, settings.index.linger_seconds
    )


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(
        settings.embedder_dir, settings.embedder.batch_size, settings.embedder.precision
    )


def build_reranker(settings: Settings, embedder: TokenEmbedder) -> Reranker | None:
    """The configured cross-encoder; else, when `late_interaction` is on, late interaction
    with the embedder's token vectors; else none."""
    if settings.retrieval.reranker_dir is not None:
        return CrossEncoderReranker(settings.retrieval.reranker_dir)
    if settings.retrieval.late_interaction:
        return LateInteractionReranker(embedder)
    return None
