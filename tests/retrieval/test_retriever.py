"""The limits on a query: its length, and the keyword terms it brings to the index."""

from __future__ import annotations

from typing import Any

import pytest

from retrieval.access import Scope
from retrieval.errors import QueryTooLong
from retrieval.retriever import Retriever
from retrieval.sparse import MAX_QUERY_TERMS, SparseEncoder
from retrieval.store import VectorStore


class Untouchable:
    """A store and an embedder that fail if anything reaches them."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} was called for a query that is refused")


def made_up_words(count: int) -> str:
    letters = "bcdfghjklmnpqrstvwxz"
    return " ".join(
        "q" + "".join(letters[n // len(letters) ** place % len(letters)] for place in range(4))
        for n in range(count)
    )


def test_an_oversized_search_is_refused_before_the_embedder_and_the_store() -> None:
    untouchable: Any = Untouchable()
    store: VectorStore = untouchable
    retriever = Retriever(untouchable, store, SparseEncoder(["en"]), max_query_chars=100)
    with pytest.raises(QueryTooLong) as refused:
        retriever.search("budget " * 20, Scope.operator(), 5)
    assert (refused.value.length, refused.value.limit) == (139, 100)
    assert str(refused.value) == (
        "the question has 139 characters, more than the 100 allowed; shorten it and ask again"
    )
    # Spaces around a query do not count against it.
    retriever.check_query("   " + "b" * 100 + "\n\n")


def test_a_query_brings_at_most_the_capped_terms_of_its_first_words() -> None:
    sparse = SparseEncoder(["en", "fr", "de"])
    text = "harbour renovation budget " + made_up_words(500)
    english = sparse.terms(text, "en", MAX_QUERY_TERMS)
    assert len(english) == MAX_QUERY_TERMS
    assert sparse.terms("harbour renovation budget", "en") <= english
    assert len(sparse.terms(text, "en")) > 500  # uncapped, for a passage's own terms
    assert len(sparse.query(text).indices) <= 3 * MAX_QUERY_TERMS
    # A question under the cap keeps all its terms.
    question = "What is the approved budget of the Harbour Renovation Project?"
    assert sparse.terms(question, "en", MAX_QUERY_TERMS) == sparse.terms(question, "en")
