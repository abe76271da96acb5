"""Composition of the language-model side from the settings."""

from __future__ import annotations

from llm.answer import Answerer
from llm.client import ChatModel, http_client
from retrieval.retriever import Retriever
from settings import Settings


def build_chat_model(settings: Settings) -> ChatModel:
    api_key = settings.llm.api_key.get_secret_value() if settings.llm.api_key else None
    http = http_client(settings.llm.resolved_base_url(), settings.llm.timeout_seconds, api_key)
    return ChatModel(http, settings.llm.model, settings.llm.max_tokens, settings.llm.temperature)


def build_answerer(settings: Settings, retriever: Retriever) -> Answerer:
    return Answerer(
        retriever,
        build_chat_model(settings),
        context_passages=settings.retrieval.context_passages,
        min_score=settings.retrieval.min_score,
        score_margin=settings.retrieval.score_margin,
        min_support=settings.retrieval.min_support,
        quote_unverified=settings.retrieval.quote_unverified_answers,
        answer_check=settings.retrieval.answer_check,
    )
