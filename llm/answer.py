"""The answer step: retrieve, refuse or prompt, then tie the answer to the passages it used."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from llm.client import ChatModel, Message
from llm.prompts import REFUSAL, grounded_messages
from retrieval.access import Scope
from retrieval.models import Hit
from retrieval.retriever import Retriever
from retrieval.store import SearchFilters

_CITATION = re.compile(r"\[(\d{1,2})\]")
_WORD = re.compile(r"[^\W_]{3,}|\d+(?:[.,]\d+)*", re.UNICODE)
# Share of an uncited answer's words that must come from one passage for it to be the source.
_ATTRIBUTION_OVERLAP = 0.5


@dataclass(frozen=True)
class Citation:
    path: str
    page: int | None
    chunk_id: str

    def as_json(self) -> dict[str, object]:
        return {"path": self.path, "page": self.page, "chunk_id": self.chunk_id}


@dataclass(frozen=True)
class Answer:
    text: str
    refused: bool
    citations: list[Citation]
    passages: list[Hit] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "answer": self.text,
            "refused": self.refused,
            "citations": [c.as_json() for c in self.citations],
        }


@dataclass(frozen=True)
class PreparedQuestion:
    """The retrieval half of an answer: the passages, and the prompt when there is one."""

    question: str
    passages: list[Hit]
    messages: list[Message] | None

    @property
    def refused_before_model(self) -> bool:
        return self.messages is None


class Answerer:
    def __init__(
        self,
        retriever: Retriever,
        chat: ChatModel,
        context_passages: int,
        min_score: float,
        score_margin: float,
    ) -> None:
        self.retriever = retriever
        self.chat = chat
        self._context_passages = context_passages
        self._min_score = min_score
        self._score_margin = score_margin

    def prepare(
        self, question: str, scope: Scope, filters: SearchFilters | None = None
    ) -> PreparedQuestion:
        hits = self.retriever.search(question, scope, self._context_passages, filters)
        best = max((relevance(hit) for hit in hits), default=0.0)
        if best < self._min_score:
            return PreparedQuestion(question, hits, None)
        floor = max(self._min_score, best - self._score_margin)
        relevant = [hit for hit in hits if relevance(hit) >= floor]
        return PreparedQuestion(question, relevant, grounded_messages(question, relevant))

    def finish(self, prepared: PreparedQuestion, text: str) -> Answer:
        if prepared.messages is None:
            return Answer(REFUSAL, True, [], prepared.passages)
        text = text.strip()
        if not text or _is_refusal(text):
            return Answer(REFUSAL, True, [], prepared.passages)
        citations = cited_passages(text, prepared.passages)
        if not citations:
            # An answer that can't be tied to any passage may come from the model's own
            # memory: it is withheld, and the closest passages are shown instead.
            return Answer(REFUSAL, True, [], prepared.passages)
        return Answer(text, False, citations, prepared.passages)

    def answer(
        self, question: str, scope: Scope, filters: SearchFilters | None = None
    ) -> Answer:
        prepared = self.prepare(question, scope, filters)
        if prepared.messages is None:
            return self.finish(prepared, "")
        return self.finish(prepared, self.chat.complete(prepared.messages))


def relevance(hit: Hit) -> float:
    """How well a passage matches the question on an absolute scale: by meaning (cosine of
    the vectors) or by its words (share of the question's keywords it contains), whichever
    is stronger, so that both paraphrases and exact codes count."""
    return max(hit.similarity, hit.coverage)


def _is_refusal(text: str) -> bool:
    return REFUSAL.lower().rstrip(".") in text.lower()


def cited_passages(text: str, passages: Sequence[Hit]) -> list[Citation]:
    """The passages the answer cites as [n]; when it cites none, the passages it quotes."""
    numbers = [int(n) for n in _CITATION.findall(text)]
    chosen = [passages[n - 1] for n in dict.fromkeys(numbers) if 1 <= n <= len(passages)]
    if not chosen:
        chosen = _quoted_passages(text, passages)
    return [Citation(hit.chunk.path, hit.chunk.page, hit.chunk.id) for hit in chosen]


def _quoted_passages(text: str, passages: Sequence[Hit]) -> list[Hit]:
    words = _words(_CITATION.sub(" ", text))
    if not words:
        return []
    scored = []
    for hit in passages:
        overlap = len(words & _words(hit.chunk.text)) / len(words)
        if overlap >= _ATTRIBUTION_OVERLAP:
            scored.append((overlap, hit))
    scored.sort(key=lambda pair: pair[0], reverse=True)
    return [hit for _, hit in scored[:1]]


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}
