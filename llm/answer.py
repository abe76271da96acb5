"""The answer step: retrieve, refuse or prompt, then tie the answer to the passages it used.

A question longer than the retriever's limit is refused (QueryTooLong) before anything else:
no rewrite, no embedding, no lookup in the index. The keyword terms of a question looked up one
by one in the index (their rarity, the names a source must mention) are at most
MAX_QUERY_TERMS per language, those of its first words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Literal

from llm.client import ChatModel, Message
from llm.grounding import (
    CITATION,
    AnswerCheck,
    Quote,
    best_quote,
    missing_identifiers,
    names_in,
    supported,
    words_of,
)
from llm.prompts import REFUSAL, grounded_messages, passage_label, rewrite_messages
from retrieval.access import Scope
from retrieval.language import question_language
from retrieval.models import Hit
from retrieval.retriever import Retriever
from retrieval.sparse import MAX_QUERY_TERMS
from retrieval.store import SearchFilters

# Keyword rarity: a term in more chunks than this counts as common.
_FREQUENCY_CAP = 1000
# Earlier turns a follow-up question is rewritten from.
_HISTORY_TURNS = 3
# Share of a follow-up's words a rewrite keeps (it only resolves references).
_REWRITE_KEEPS = 0.5
# Share of an uncited answer's words that must come from one passage for it to be the source.
_ATTRIBUTION_OVERLAP = 0.5
_BRACKETED = re.compile(r"\[([^\[\]\n]{1,300})\]")


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
    # "model": the model's answer, verified against the passages it cites; "quote": the
    # model's answer could not be verified, so the passage sentence that best answers the
    # question is quoted instead; "refused".
    origin: Literal["model", "quote", "refused"] = "model"
    # Why an answer was refused, for logs and evaluation; never shown as the answer.
    reason: str = ""
    # How well the best passage sentence supports an answer (see llm.grounding.Quote).
    support: float = 0.0

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
    # What was searched for: the question, or a follow-up rewritten to stand alone.
    search_query: str = ""
    # Why no prompt was built.
    reason: str = ""
    # The passage sentence that best answers the question, when there are passages.
    quote: Quote | None = None
    # What the model was asked: the question, or the follow-up's standalone rewrite.
    asked: str = ""

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
        min_support: float = 0.0,
        quote_unverified: bool = True,
        answer_check: AnswerCheck = "wording",
    ) -> None:
        self.retriever = retriever
        self.chat = chat
        self._context_passages = context_passages
        self._min_score = min_score
        self._score_margin = score_margin
        self._min_support = min_support
        self._quote_unverified = quote_unverified
        self._answer_check: AnswerCheck = answer_check

    def prepare(
        self,
        question: str,
        scope: Scope,
        filters: SearchFilters | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> PreparedQuestion:
        """Retrieve for the question (a follow-up is first rewritten to stand alone from the
        earlier (question, answer) pairs in `history`) and build the prompt, or decide to
        refuse without one when no passage is relevant enough. A question over the length
        limit raises QueryTooLong."""
        self.retriever.check_query(question)
        query, asked = self.standalone_question(question, history)
        hits = self.retriever.search(query, scope, self._context_passages, filters)
        best = max((relevance(hit) for hit in hits), default=0.0)
        if best < self._min_score:
            reason = f"best passage relevance {best:.2f} is below {self._min_score:.2f}"
            return PreparedQuestion(question, hits, None, query, reason)
        floor = max(self._min_score, best - self._score_margin)
        relevant = [hit for hit in hits if relevance(hit) >= floor]
        unknown = missing_identifiers(query, relevant)
        if unknown:
            reason = f"no passage mentions {', '.join(unknown)}"
            return PreparedQuestion(question, relevant, None, query, reason)
        quote = best_quote(
            asked, relevant, self.retriever.embedder, self.retriever.sparse,
            self._rarity(asked, relevant, scope), question_language(asked),
        )  # fmt: skip
        if quote is None or quote.support < self._min_support:
            support = quote.support if quote else 0.0
            reason = f"passage support {support:.2f} is below {self._min_support:.2f}"
            return PreparedQuestion(question, relevant, None, query, reason, quote)
        source = relevant[quote.passage]
        elsewhere = self._names_missing_from(query, source, scope)
        if elsewhere:
            reason = f"{PurePath(source.chunk.path).name} never mentions {', '.join(elsewhere)}"
            return PreparedQuestion(question, relevant, None, query, reason, quote)
        messages = grounded_messages(asked, relevant)
        return PreparedQuestion(question, relevant, messages, query, quote=quote, asked=asked)

    def _names_missing_from(self, question: str, source: Hit, scope: Scope) -> list[str]:
        """The names in the question that other documents the scope may read mention and the
        source's document never does (in its text, title or path): the question is about
        another site, supplier or person than the source."""
        language = source.chunk.language
        named: dict[str, set[int]] = {}
        for name in names_in(question):
            name_terms = self.retriever.sparse.terms(name, language)
            if len(set().union(name_terms, *named.values())) > MAX_QUERY_TERMS:
                break
            named[name] = name_terms
        terms = sorted(set().union(*named.values()))
        if not terms:
            return []
        store = self.retriever.store
        # Asked in another language, a capitalised word may be a common noun of that
        # language (German capitalises every noun): only the source language's names count.
        asked_in = question_language(question)
        in_language = SearchFilters(language=language) if asked_in not in ("", language) else None
        known = store.term_frequencies(terms, scope, 1, in_language)
        document = SearchFilters(doc_id=source.chunk.doc_id)
        in_document = store.term_frequencies(terms, scope, 1, document)
        return [
            name
            for name, name_terms in named.items()
            if name_terms
            and all(known[term] for term in name_terms)
            and not all(in_document[term] for term in name_terms)
        ]

    def _rarity(self, question: str, passages: Sequence[Hit], scope: Scope) -> dict[int, float]:
        """Inverse document frequency of the question's keyword terms in every language of
        the passages, among the chunks the scope may read."""
        sparse = self.retriever.sparse
        languages = {hit.chunk.language for hit in passages}
        terms = sorted(
            {term for code in languages for term in sparse.terms(question, code, MAX_QUERY_TERMS)}
        )
        store = self.retriever.store
        total = store.count()
        frequencies = store.term_frequencies(terms, scope, _FREQUENCY_CAP)
        return {t: math.log((total + 1) / (frequencies[t] + 0.5)) for t in terms}

    def standalone_question(
        self, question: str, history: Sequence[tuple[str, str]]
    ) -> tuple[str, str]:
        """What to search for and what to ask the model. A follow-up is rewritten by the model
        to stand alone, and both are the rewrite. When the rewrite is not a plausible one (a
        small model may answer instead of rewriting), the last question and this one together
        are searched, as they carry the subject, and the model is asked this one alone: given
        both, a small model answers the earlier one."""
        if not history:
            return question, question
        recent = history[-_HISTORY_TURNS:]
        rewritten = self.chat.complete(rewrite_messages(question, recent)).strip()
        limit = self.retriever.max_query_chars
        if len(rewritten) <= limit and _plausible_rewrite(
            rewritten, question, [asked for asked, _ in recent]
        ):
            return rewritten, rewritten
        earlier = recent[-1][0].strip()[: max(limit - len(question.strip()) - 1, 0)]
        return f"{earlier} {question.strip()}".strip(), question

    def finish(self, prepared: PreparedQuestion, text: str) -> Answer:
        """The answer from the model's reply: kept when it stands on the passages it cites,
        among them the best-supporting one; otherwise the best-supporting passage sentence,
        quoted (or a refusal, when quoting is off)."""
        passages, quote = prepared.passages, prepared.quote
        support = quote.support if quote else 0.0
        if prepared.messages is None or quote is None:
            return _refusal(passages, prepared.reason, support)
        text = cited_by_number(text.strip(), passages)
        if _is_refusal(text):
            return _refusal(passages, "the model found no answer in the passages", support)
        if text and not _cites_missing_passages(text, passages):
            cited = cited_hits(text, passages)
            # Kept when it stands on what it cites, and (checking the wording) cites the
            # passage that answers best: a small model may copy a figure from a neighbouring
            # passage about something else.
            cites_best = passages[quote.passage] in cited or self._answer_check == "facts"
            if (
                cited
                and cites_best
                and supported(text, prepared.asked or prepared.question, cited, self._answer_check)
            ):
                citations = [_citation(hit) for hit in cited]
                return Answer(text, False, citations, passages, support=support)
        if not self._quote_unverified:
            reason = "the model's answer is not supported by the passages"
            return _refusal(passages, reason, support)
        hit = passages[quote.passage]
        quoted = f"\u201c{quote.sentence}\u201d [{quote.passage + 1}]"
        return Answer(quoted, False, [_citation(hit)], passages, "quote", support=support)

    def answer(
        self,
        question: str,
        scope: Scope,
        filters: SearchFilters | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> Answer:
        prepared = self.prepare(question, scope, filters, history)
        if prepared.messages is None:
            return self.finish(prepared, "")
        return self.finish(prepared, self.chat.complete(prepared.messages))


def relevance(hit: Hit) -> float:
    """How well a passage matches the question on an absolute scale: by meaning (cosine of
    the vectors) or by its words (share of the question's keywords it contains), whichever
    is stronger, so that both paraphrases and exact codes count."""
    return max(hit.similarity, hit.coverage)


def _plausible_rewrite(rewritten: str, question: str, earlier: Sequence[str]) -> bool:
    """One question, keeping most of the follow-up's words, not a repeat of an earlier one."""
    if "\n" in rewritten or not rewritten.endswith("?") or len(rewritten) > 400:
        return False
    if words_of(rewritten) in [words_of(asked) for asked in earlier]:
        return False
    kept = words_of(question)
    return not kept or len(kept & words_of(rewritten)) / len(kept) >= _REWRITE_KEEPS


def cited_by_number(text: str, passages: Sequence[Hit]) -> str:
    """The answer with a passage cited by the source its frame names (`[guest-wifi.md]`,
    `[minutes.pdf, page 2]`) cited by its number instead, as every check expects."""
    numbers: dict[str, int] = {}
    for n, hit in enumerate(passages, start=1):
        for name in (passage_label(hit), PurePath(hit.chunk.path).name):
            numbers.setdefault(name.casefold(), n)

    def by_number(match: re.Match[str]) -> str:
        n = numbers.get(match[1].strip().casefold())
        return f"[{n}]" if n else match[0]

    return _BRACKETED.sub(by_number, text)


def _cites_missing_passages(text: str, passages: Sequence[Hit]) -> bool:
    """An answer citing a passage number it was not given made that source up."""
    return any(not 1 <= int(n) <= len(passages) for n in CITATION.findall(text))


def _is_refusal(text: str) -> bool:
    return REFUSAL.lower().rstrip(".") in text.lower()


def cited_passages(text: str, passages: Sequence[Hit]) -> list[Citation]:
    """The passages the answer cites as [n]; when it cites none, the passage it quotes."""
    return [_citation(hit) for hit in cited_hits(text, passages)]


def cited_hits(text: str, passages: Sequence[Hit]) -> list[Hit]:
    numbers = [int(n) for n in CITATION.findall(text)]
    chosen = [passages[n - 1] for n in dict.fromkeys(numbers) if 1 <= n <= len(passages)]
    return chosen or _quoted_passages(text, passages)


def _citation(hit: Hit) -> Citation:
    return Citation(hit.chunk.path, hit.chunk.page, hit.chunk.id)


def _refusal(passages: list[Hit], reason: str, support: float = 0.0) -> Answer:
    return Answer(REFUSAL, True, [], passages, "refused", reason, support)


def _quoted_passages(text: str, passages: Sequence[Hit]) -> list[Hit]:
    words = words_of(CITATION.sub(" ", text))
    if not words:
        return []
    scored = []
    for hit in passages:
        overlap = len(words & words_of(hit.chunk.text)) / len(words)
        if overlap >= _ATTRIBUTION_OVERLAP:
            scored.append((overlap, hit))
    scored.sort(key=lambda pair: pair[0], reverse=True)
    return [hit for _, hit in scored[:1]]
