"""Query text in, the chunks a scope may read out, best first."""

from __future__ import annotations

from collections.abc import Mapping

from retrieval.access import Scope
from retrieval.embedder import Embedder
from retrieval.models import Hit
from retrieval.store import VectorStore


class Retriever:
    def __init__(self, embedder: Embedder, store: VectorStore) -> None:
        self.embedder = embedder
        self.store = store

    def search(
        self, query: str, scope: Scope, k: int, filters: Mapping[str, str] | None = None
    ) -> list[Hit]:
        if scope.sees_nothing or not query.strip():
            return []
        return self.store.search(self.embedder.embed_query(query), scope, k, filters)
