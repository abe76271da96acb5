"""Keyword vectors for the BM25 half of hybrid search, computed locally.

A passage is tokenised, stopword-filtered and stemmed for its own language; the engine
weighs each term by its inverse document frequency (Qdrant's IDF modifier). A query's
language is not known, so its terms are taken through every configured language's analyser
and merged: "factures" then meets French passages stemmed as "factur", and "invoices"
English ones stemmed as "invoic".

A query contributes at most MAX_QUERY_TERMS terms per language, those of its first words:
each term of a question is also looked up on its own in the index (how rare it is, whether a
document names it), and a pasted text must not issue thousands of such lookups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import qdrant_edge as qe

# ISO 639-1 codes and the Snowball stemmers the engine's analyser has for them.
ANALYSERS: dict[str, str] = {
    "en": "english",
    "fr": "french",
    "de": "german",
    "nl": "dutch",
    "it": "italian",
    "es": "spanish",
    "pt": "portuguese",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "fi": "finnish",
    "hu": "hungarian",
    "ro": "romanian",
    "el": "greek",
}
FALLBACK_LANGUAGE = "en"
MAX_QUERY_TERMS = 64


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


class SparseEncoder:
    def __init__(self, query_languages: Iterable[str]) -> None:
        self._models: dict[str, qe.Bm25] = {}
        self._query_languages = [self._known(code) for code in query_languages]

    def document(self, text: str, language: str) -> SparseVector:
        vector = self._model(language).embed_document(text)
        return SparseVector(list(vector.indices), list(vector.values))

    def query(self, text: str) -> SparseVector:
        terms = sorted(self.query_terms(text))
        return SparseVector(terms, [1.0] * len(terms))

    def query_terms(self, text: str) -> set[int]:
        return {
            index
            for code in self._query_languages
            for index in self.terms(text, code, MAX_QUERY_TERMS)
        }

    def terms(self, text: str, language: str, limit: int | None = None) -> set[int]:
        """The text's terms in the language; with a `limit`, at most that many, those of its
        first words."""
        model = self._model(language)
        found = set(model.embed_query(text).indices)
        if limit is None or len(found) <= limit:
            return found
        kept: dict[int, None] = {}
        for word in text.split():
            kept.update(dict.fromkeys(model.embed_query(word).indices))
            if len(kept) >= limit:
                break
        return set(list(kept)[:limit])

    def coverage(self, query: str, passage: str, language: str) -> float:
        """Share of the query's terms found in the passage, in the passage's language."""
        wanted = self.terms(query, language)
        if not wanted:
            return 0.0
        return len(wanted & self.terms(passage, language)) / len(wanted)

    def _model(self, code: str) -> qe.Bm25:
        code = self._known(code)
        if code not in self._models:
            self._models[code] = qe.Bm25(qe.Bm25Config(language=ANALYSERS[code]))
        return self._models[code]

    @staticmethod
    def _known(code: str) -> str:
        return code if code in ANALYSERS else FALLBACK_LANGUAGE
