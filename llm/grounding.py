"""Checks that tie an answer to the passages, independent of how good the model is.

- `missing_identifiers`: codes, reference numbers and years in the question (`ST-400`,
  `VM-20455`, `2022`) that no passage contains. A question about a product, a contract or a
  year the passages never name is refused, however close they are otherwise.
- `names_in`: the words a question capitalises mid-sentence (a site, a supplier, a person).
  A question naming something the index knows that the answering document never mentions
  is about something else: parking at one site answered from another site's rules.
- `supported`: whether a model's answer stands on the passages it cites: its figures and codes
  appear there and it says something the question did not; with the `wording` check (small
  models) most of its words appear there too, with `facts` (a strong model) it may paraphrase
  or answer in another language than the passage.
- `best_quote`: the sentence of the passages that best answers the question, by meaning and
  by keywords, and how well it supports an answer. Too little support and the question is
  refused before the model is asked; enough, and the sentence is quoted and cited when the
  model's answer cannot be verified. Keywords compare only within a language: for a passage
  in another language than the question, the keyword part is unknown and counts as half
  (NO_KEYWORD_EVIDENCE), so meaning alone ranks its sentences, and codes and names are left
  to the checks above.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from llm.prompts import REDACTED, without_instructions
from retrieval.embedder import Embedder
from retrieval.models import Hit
from retrieval.sparse import SparseEncoder
from retrieval.store import cosine

# A product code, an article number, a contract reference: a token of digits and capital
# letters (`ST-400`, `TMG-PROC-2024-031`, `A5`), or a number of two digits or more.
_TOKEN = re.compile(r"\b\w+(?:[-/.]\w+)*\b")
_LETTERS = re.compile(r"[^\W\d_]+")
CITATION = re.compile(r"\[(\d{1,2})\]")
_FIGURE = re.compile(r"\d+(?:[.,\s]\d{3})*(?:[.,]\d+)?")
_WORD = re.compile(r"[^\W_]{3,}|\d+(?:[.,]\d+)*", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
# Share of an answer's words that must appear in the passages it cites.
_SUPPORTED_OVERLAP = 0.6
# How much a sentence from a lower-ranked passage must match better to be preferred.
_RANK_PENALTY = 0.1
# The keyword share of a passage in another language than the question: no evidence either
# way (a French question shares no word with an English passage that answers it).
NO_KEYWORD_EVIDENCE = 0.5
# The shortest and longest sentence worth quoting, in characters.
_QUOTE_MIN, _QUOTE_MAX = 20, 400


def missing_identifiers(question: str, passages: Sequence[Hit]) -> list[str]:
    context = _normalised(" ".join(hit.chunk.embedding_text() for hit in passages))
    return [
        code
        for code in dict.fromkeys(_TOKEN.findall(question))
        if _is_identifier(code) and _normalised(code) not in context
    ]


def names_in(question: str) -> list[str]:
    """The words the question capitalises after the first of a sentence."""
    names = []
    for sentence in _SENTENCE_END.split(question):
        names += [token for token in _TOKEN.findall(sentence)[1:] if token[0].isupper()]
    return list(dict.fromkeys(names))


def _is_identifier(token: str) -> bool:
    if token.isdigit():
        return len(token) >= 2  # a year, an amount, a room number
    if not any(c.isdigit() for c in token):
        return False
    letters = _LETTERS.findall(token)
    return bool(letters) and all(run.isupper() for run in letters)


AnswerCheck = Literal["wording", "facts"]


def supported(
    answer: str, question: str, cited: Sequence[Hit], check: AnswerCheck = "wording"
) -> bool:
    """Whether the answer stands on the passages it cites. Both checks want its figures and
    codes there and something said beyond the question; `wording` also wants most of its
    words there, and what it says beyond the question to be the passages' words."""
    answer = CITATION.sub(" ", answer)
    context = " ".join(hit.chunk.embedding_text() for hit in cited)
    words = words_of(answer)
    if not words:
        return False
    if not _codes(answer) <= _codes(context):
        return False
    if not _figures(answer) <= _figures(context):
        return False
    if check == "facts":
        return bool(words - words_of(question))
    context_words = words_of(context)
    overlap = len(words & context_words) / len(words)
    says_something_new = bool((words & context_words) - words_of(question))
    return overlap >= _SUPPORTED_OVERLAP and says_something_new


@dataclass(frozen=True)
class Quote:
    sentence: str
    passage: int  # index into the passages
    # How well the sentence, in its passage, answers the question: the cosine of question and
    # sentence plus twice the share of the question's keywords, weighted by their rarity in
    # the index, that the passage (with its place, title and heading) contains. A question
    # whose rare words (a name, a topic) the evidence lacks is about something else.
    support: float


def best_quote(
    question: str,
    passages: Sequence[Hit],
    embedder: Embedder,
    sparse: SparseEncoder,
    rarity: Mapping[int, float],
    question_language: str = "",
) -> Quote | None:
    """The sentence that best answers the question, preferring higher-ranked passages.
    `rarity` weighs each keyword term of the question (in every passage language); the
    `question_language` ("" when not known: every passage is taken to be in it) tells which
    passages' keywords cannot be compared with the question's."""
    candidates = [
        (index, sentence)
        for index, hit in enumerate(passages)
        for sentence in _sentences(hit.chunk.text)
    ]
    if not candidates:
        return None
    vectors = embedder.embed_documents([sentence for _, sentence in candidates])
    query = embedder.embed_query(question)
    # Per passage: the question's terms in its language, and the passage's own terms.
    terms = [
        (sparse.terms(question, hit.chunk.language),
         sparse.terms(hit.chunk.embedding_text(), hit.chunk.language))
        for hit in passages
    ]  # fmt: skip
    elsewhere = [
        question_language not in ("", hit.chunk.language) and hit.chunk.language != ""
        for hit in passages
    ]
    best: tuple[float, Quote] | None = None
    for (index, sentence), vector in zip(candidates, vectors, strict=True):
        wanted, context = terms[index]
        found = sparse.terms(sentence, passages[index].chunk.language)
        similarity = cosine(query, vector)
        if elsewhere[index]:
            coverage = share = NO_KEYWORD_EVIDENCE
        else:
            coverage = len(wanted & found) / len(wanted) if wanted else 0.0
            total = sum(rarity.get(term, 0.0) for term in wanted)
            covered = sum(rarity.get(term, 0.0) for term in wanted & (found | context))
            share = covered / total if total else 0.0
        quote = Quote(sentence, index, similarity + 2 * share)
        preference = similarity + coverage - _RANK_PENALTY * index
        if best is None or preference > best[0]:
            best = (preference, quote)
    return best[1] if best else None


def _sentences(text: str) -> list[str]:
    """The passage's sentences worth quoting; never a planted instruction."""
    parts = _SENTENCE_END.split(without_instructions(text))
    sentences = [" ".join(part.split()) for part in parts]
    return [s for s in sentences if _QUOTE_MIN <= len(s) <= _QUOTE_MAX and REDACTED not in s]


def _codes(text: str) -> set[str]:
    """The tokens mixing letters and digits (`ST-800`, `harbour-2026`, `B-112`), normalised."""
    return {_normalised(token) for token in _TOKEN.findall(text) if _is_code(token)}


def _figures(text: str) -> set[str]:
    """The numbers standing alone, not inside a code: `2026` is not a figure of `harbour-2026`,
    so an answer that keeps only the number of a code is not borne out by it."""
    alone = _TOKEN.sub(lambda m: " " if _is_code(m.group()) else m.group(), text)
    return {_digits(figure) for figure in _FIGURE.findall(alone)} - {""}


def _is_code(token: str) -> bool:
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def _normalised(text: str) -> str:
    return re.sub(r"[\s\-/._]+", "", text.lower())


def _digits(figure: str) -> str:
    return re.sub(r"\D", "", figure)


def words_of(text: str) -> set[str]:
    """The words of three letters or more and the numbers, lowercased."""
    return {w.lower() for w in _WORD.findall(text)}
