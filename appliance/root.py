"""The composition root: the appliance's parts, each chosen and built from the settings in
this one place, on first use (a CLI command loads only what it needs; the UI and the API
share one set per process)."""

from __future__ import annotations

from functools import cached_property

from appliance.audit import AuditLog, build_audit
from appliance.conversations import ConversationStore
from appliance.feedback import FeedbackStore
from appliance.identity import IdentityProvider, SignInGuard, build_identity, build_sign_in
from appliance.tokens import TokenStore
from appliance.users import UserDirectory, build_user_directory
from ingest.catalog import Catalog
from llm.answer import Answerer
from llm.build import build_answerer
from retrieval.build import build_embedder, build_reranker, build_sparse, build_store
from retrieval.retriever import Retriever
from retrieval.store import VectorStore
from settings import Settings


def build_retriever(settings: Settings, store: VectorStore | None = None) -> Retriever:
    """The retriever, over `store` when the caller shares one (else a store of its own), with
    the ledger's catalog for the names documents define and the index's model."""
    catalog = Catalog(settings.ledger_path)
    embedder = build_embedder(settings)
    return Retriever(
        embedder,
        store or build_store(settings),
        build_sparse(settings),
        build_reranker(settings, embedder),
        settings.retrieval.rerank_candidates,
        settings.retrieval.max_question_chars,
        names=catalog,
        index_model=catalog.index_model,
    )


class Parts:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> VectorStore:
        """The index, one handle per process: the answerer searches it, the history checks
        who may still read a stored passage, erasure deletes from it."""
        return build_store(self.settings)

    @cached_property
    def retriever(self) -> Retriever:
        return build_retriever(self.settings, self.store)

    @cached_property
    def answerer(self) -> Answerer:
        return build_answerer(self.settings, self.retriever)

    @cached_property
    def conversations(self) -> ConversationStore:
        return ConversationStore(self.settings.history_path)

    @cached_property
    def feedback(self) -> FeedbackStore:
        return FeedbackStore(self.settings.feedback_path)

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.settings.ledger_path)

    @cached_property
    def audit(self) -> AuditLog:
        return build_audit(self.settings)

    @cached_property
    def users(self) -> UserDirectory:
        return build_user_directory(self.settings)

    @cached_property
    def identity(self) -> IdentityProvider:
        return build_identity(self.settings, self.users)

    @cached_property
    def sign_in_guard(self) -> SignInGuard:
        return build_sign_in(self.settings)

    @cached_property
    def tokens(self) -> TokenStore:
        return TokenStore(self.settings.tokens_path)

    def close(self) -> None:
        """Close the parts that were built."""
        built = vars(self)
        for name in ("conversations", "feedback", "users", "tokens", "store"):
            if name in built:
                built[name].close()
