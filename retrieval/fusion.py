"""One ranking from the two halves of hybrid search, the same for every store.

Each store hands over the candidates either half found (the nearest passages by vector, the
best by BM25 keywords), each with its dense vector and its BM25 score (0 when the keyword
half did not find it). A candidate scores

    its cosine with the query, scaled so the candidates' lowest is 0 and highest is 1
    + KEYWORD_WEIGHT * its BM25 score / the best BM25 score among the candidates
    + EXACT_WEIGHT * how much of the query's exact tokens it holds verbatim

and ties go to the smaller chunk id, so the same index and query always give the same order.

A candidate only the vector half found counts a BM25 score of 0 (its own is below the keyword
half's last). Exact tokens are the query's words of three characters or more that carry a
digit (`AMEND-4711`, `2023/0457`, `PX-221-B`, `36,783.74`, `4711`): the keyword analyser
splits them into parts that near-duplicate passages share, so only the whole token tells the
passage that holds it from its neighbours. Each counts by its rarity among the candidates
(one held by all of them tells nothing), and a passage's exact score is the rarity-weighted
share of those tokens it holds. Reciprocal-rank fusion let a crowd of similar passages,
ranked well by both halves, outvote the one passage holding the code; scores keep the size
of the keyword half's lead.

Both halves are scaled to the candidates at hand because embedding models differ in how
widely their cosines spread: MiniLM's candidates for a question span about 0.3, multilingual
e5's about 0.05. On the raw cosine, a keyword weight that suits one model lets keywords
drown meaning in the other (an e5 question in French over English passages, which shares no
keyword with them, lost its passage to French ones that shared a few).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from retrieval.models import Chunk, Hit
from retrieval.store import chunk_from_payload

KEYWORD_WEIGHT = 0.2  # chosen on the dev splits of both evaluation corpora
EXACT_WEIGHT = 1.5

_WORD = re.compile(r"\S+")
_EDGE_PUNCTUATION = "\"'()[]{}<>«»“”‘’.,;:!?"
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True)
class Candidate:
    """A passage found by either half of a hybrid search. Its `Chunk` is built only when
    fusion needs it: for the hits it returns, and for every candidate when the query holds
    exact tokens."""

    chunk_id: str
    vector: Sequence[float]
    keyword_score: float
    load: Callable[[], Chunk] = field(repr=False, compare=False)

    @classmethod
    def of(cls, chunk: Chunk, vector: Sequence[float], keyword_score: float = 0.0) -> Candidate:
        return cls(chunk.id, vector, keyword_score, lambda: chunk)

    @classmethod
    def from_payload(
        cls,
        point_id: str,
        payload: Mapping[str, Any],
        vector: Sequence[float],
        keyword_score: float,
    ) -> Candidate:
        """A store's search result, its chunk left in the payload until fusion keeps it."""
        return cls(point_id, vector, keyword_score, lambda: chunk_from_payload(point_id, payload))

    @cached_property
    def chunk(self) -> Chunk:
        return self.load()


def exact_tokens(query: str) -> list[str]:
    """The query's code-like words, lowercased, in order, each once."""
    found: dict[str, None] = {}
    for match in _WORD.finditer(query):
        word = match.group().strip(_EDGE_PUNCTUATION).lower()
        if len(word) >= 3 and _DIGIT.search(word):
            found[word] = None
    return list(found)


def fuse(
    query_text: str, query_vector: Sequence[float], found: Sequence[Candidate], k: int
) -> list[Hit]:
    """The best k candidates, best first (see the module's description)."""
    merged: dict[str, Candidate] = {}
    for candidate in found:  # a passage both halves found keeps its keyword score
        kept = merged.get(candidate.chunk_id)
        if kept is None or candidate.keyword_score > kept.keyword_score:
            merged[candidate.chunk_id] = candidate
    candidates = list(merged.values())
    if not candidates or k <= 0:
        return []
    vectors = np.array([candidate.vector for candidate in candidates], dtype=np.float64)
    similarities = vectors @ np.asarray(query_vector, dtype=np.float64)
    spread = float(similarities.max() - similarities.min())
    dense = (similarities - similarities.min()) / spread if spread > 0 else np.ones(len(vectors))
    keywords = np.array([candidate.keyword_score for candidate in candidates])
    best_keyword = float(keywords.max())
    keyword = keywords / best_keyword if best_keyword > 0 else np.zeros(len(vectors))
    exact = np.array(_exact_scores(query_text, candidates))
    scores = dense + KEYWORD_WEIGHT * keyword + EXACT_WEIGHT * exact
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i].chunk_id))
    return [
        Hit(
            chunk=candidates[i].chunk,
            score=float(scores[i]),
            similarity=float(similarities[i]),
        )
        for i in order[:k]
    ]


def _exact_scores(query_text: str, candidates: Sequence[Candidate]) -> list[float]:
    tokens = exact_tokens(query_text)
    if not tokens:
        return [0.0] * len(candidates)
    texts = [candidate.chunk.embedding_text().lower() for candidate in candidates]
    held = [[_holds(text, token) for token in tokens] for text in texts]
    rarity = [1.0 - sum(row[i] for row in held) / len(texts) for i in range(len(tokens))]
    return [
        sum(weight for weight, holds in zip(rarity, row, strict=True) if holds) / len(tokens)
        for row in held
    ]


def _holds(text: str, token: str) -> bool:
    """Whether the text holds the token as a whole word (not inside a longer one)."""
    return re.search(rf"(?<!\w){re.escape(token)}(?!\w)", text) is not None
