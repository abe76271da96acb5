"""Telling a text's language from its function words: documents and short questions."""

from __future__ import annotations

import pytest

from retrieval.language import detect_language, question_language


def test_a_paragraph_is_classified_by_its_function_words() -> None:
    assert detect_language("The committee meets in the spring and its decisions are final.") == "en"
    assert (
        detect_language("Le comité se réunit au printemps et ses décisions sont définitives.")
        == "fr"
    )
    assert (
        detect_language("Der Ausschuss tagt im Frühjahr und seine Entscheidungen sind bindend.")
        == "de"
    )
    assert detect_language("ST-400 EUR 18") == ""


@pytest.mark.parametrize(
    ("question", "language"),
    [
        ("Wer hat den Gesellschaftsvertrag von Debian entworfen?", "de"),
        ("Qui a rédigé le contrat social de Debian ?", "fr"),
        ("How long is the voting period?", "en"),
        # One function word, or two languages alike: no verdict.
        ("Who drafted the Social Contract?", ""),
        ("Budget 2024?", ""),
    ],
)
def test_a_question_needs_two_function_words_of_one_language(question: str, language: str) -> None:
    assert question_language(question) == language
