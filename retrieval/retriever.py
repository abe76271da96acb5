"""Query text in, the chunks a scope may read out, best first."""

from __future__ import annotations

from retrieval.access import Scope
from retrieval.embedder import Embedder
from retrieval.models import Hit
from retrieval.reranker import Reranker
from retrieval.sparse import SparseEncoder
from retrieval.store import SearchFilters, SearchQuery, VectorStore


class Retriever:
    """Hybrid search in the store, then, when a reranker is configured, a second look at
    `rerank_candidates` fused candidates by a cross-encoder."""

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        sparse: SparseEncoder,
        reranker: Reranker | None = None,
        rerank_candidates: int = 30,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.sparse = sparse
        self._reranker = reranker
        self._rerank_candidates = rerank_candidates

    def search(
        self, query: str, scope: Scope, k: int, filters: SearchFilters | None = None
    ) -> list[Hit]:
        if scope.sees_nothing or not query.strip():
            return []
        wanted = max(k, self._rerank_candidates) if self._reranker else k
        found = self.store.search(
            SearchQuery(query, self.embedder.embed_query(query)), scope, wanted, filters
        )
        hits = [
            hit.model_copy(
                update={
                    "coverage": self.sparse.coverage(
                        query, hit.chunk.embedding_text(), hit.chunk.language
                    )
                }
            )
            for hit in found
        ]
        if self._reranker:
            hits = self._reranker.rerank(query, hits)
        return hits[:k]
