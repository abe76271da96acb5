"""The objects the pages share, built once per server process from the settings."""

from __future__ import annotations

import streamlit as st

from llm.answer import Answerer
from llm.build import build_answerer
from llm.feedback import FeedbackStore
from llm.history import ConversationStore
from retrieval.audit import AuditLog, build_audit
from retrieval.build import build_retriever, build_store
from retrieval.catalog import Catalog
from retrieval.identity import IdentityProvider, SignInGuard, build_identity, build_sign_in
from retrieval.store import VectorStore
from retrieval.users import UserDirectory, build_user_directory
from settings import Settings


@st.cache_resource
def settings() -> Settings:
    return Settings()


@st.cache_resource(show_spinner=False)
def store() -> VectorStore:
    """The index, one handle per process: the answerer searches it, the history checks who
    may still read a stored passage (the embedded index is held by one handle at a time)."""
    return build_store(settings())


@st.cache_resource(show_spinner=False)
def answerer() -> Answerer:
    return build_answerer(settings(), build_retriever(settings(), store()))


@st.cache_resource
def conversations() -> ConversationStore:
    return ConversationStore(settings().history_path)


@st.cache_resource
def feedback() -> FeedbackStore:
    return FeedbackStore(settings().feedback_path)


@st.cache_resource
def catalog() -> Catalog:
    return Catalog(settings().ledger_path)


@st.cache_resource
def audit() -> AuditLog:
    return build_audit(settings())


@st.cache_resource
def sign_in_guard() -> SignInGuard:
    return build_sign_in(settings())


@st.cache_resource
def identity() -> IdentityProvider:
    return build_identity(settings())


@st.cache_resource
def user_directory() -> UserDirectory:
    return build_user_directory(settings())
