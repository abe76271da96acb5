"""Query text in, the chunks a scope may read out, best first.

A query longer than `max_query_chars` is refused (QueryTooLong) before the embedder or the
index sees it; the answer step checks a question the same way before anything else.

A query that uses a name the scope's documents define (an abbreviation, or the full name it
stands for; `Catalog.names_in`) is searched with the other form added, at most
MAX_EXPANSIONS of them: "When does DORA apply?" is searched as "When does DORA apply?
(Digital Operational Resilience Act)". How well a hit covers the query's words is measured
on the query as typed.

An index built with another embedding model than the retriever's is refused
(IndexModelMismatch) before it is searched: its vectors and the query's are not comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from retrieval.access import Scope
from retrieval.embedder import Embedder
from retrieval.errors import IndexModelMismatch, QueryTooLong
from retrieval.models import Hit
from retrieval.reranker import Reranker
from retrieval.sparse import SparseEncoder
from retrieval.store import SearchFilters, SearchQuery, VectorStore
from settings import RetrievalSettings

_MAX_QUERY_CHARS: int = RetrievalSettings.model_fields["max_question_chars"].default
MAX_EXPANSIONS = 3


class NameSource(Protocol):
    """Where the names documents define are looked up (the catalog)."""

    def names_in(self, scope: Scope, query: str) -> list[tuple[str, str]]: ...


class Retriever:
    """Hybrid search in the store, then, when a reranker is configured, a second look at
    `rerank_candidates` fused candidates (a cross-encoder, or late interaction)."""

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        sparse: SparseEncoder,
        reranker: Reranker | None = None,
        rerank_candidates: int = 30,
        max_query_chars: int = _MAX_QUERY_CHARS,
        names: NameSource | None = None,
        index_model: Callable[[], str | None] | None = None,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.sparse = sparse
        self._reranker = reranker
        self._rerank_candidates = rerank_candidates
        self.max_query_chars = max_query_chars
        self._names = names
        self._index_model = index_model
        self._index_model_checked = False

    def check_query(self, query: str) -> None:
        """Raises QueryTooLong for a query over the limit (spaces around it not counted)."""
        length = len(query.strip())
        if length > self.max_query_chars:
            raise QueryTooLong(length, self.max_query_chars)

    def check_index_model(self) -> None:
        """Raises IndexModelMismatch when the index names another model than the embedder's.
        Once the models agree, they stay so for this retriever's life (only a rebuild with
        the same configuration changes the index's model)."""
        if self._index_model_checked or self._index_model is None:
            return
        recorded = self._index_model()
        if recorded is not None and recorded != self.embedder.model_id:
            raise IndexModelMismatch(recorded, self.embedder.model_id)
        self._index_model_checked = recorded is not None

    def search(
        self, query: str, scope: Scope, k: int, filters: SearchFilters | None = None
    ) -> list[Hit]:
        self.check_query(query)
        if scope.sees_nothing or not query.strip():
            return []
        self.check_index_model()
        wanted = max(k, self._rerank_candidates) if self._reranker else k
        searched = self.expanded(query, scope)
        found = self.store.search(
            SearchQuery(searched, self.embedder.embed_query(searched)), scope, wanted, filters
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

    def expanded(self, query: str, scope: Scope) -> str:
        """The query with the other form of each name it uses that the scope's documents
        define; the query itself when it uses none."""
        if self._names is None:
            return query
        folded = query.casefold()
        additions: list[str] = []
        for short, long in self._names.names_in(scope, query):
            for other in (long, short):
                if other.casefold() not in folded and other not in additions:
                    additions.append(other)
                    break
            if len(additions) >= MAX_EXPANSIONS:
                break
        return f"{query} ({'; '.join(additions)})" if additions else query
