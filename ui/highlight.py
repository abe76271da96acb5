"""A cited passage as safe Markdown, with the sentences that support the answer highlighted.

Every character of the passage is escaped as `ui.safe.literal_markdown` escapes it, so the
passage can make no HTML, link or image. A highlighted sentence is wrapped in Streamlit's
colour directive `:orange-background[...]`; inside it every `[`, `]`, `:` and `{` of the
passage is escaped, so the passage can neither close the highlight early nor open a directive
of its own, and the wrapped text never spans a line break.
"""

from __future__ import annotations

import re

from ui.safe import literal_markdown

_OPEN, _CLOSE = ":orange-background[", "]"
# Characters of passage text in one highlight; escaped, they stay under the 999 that a
# directive's label may hold.
_LABEL_CHARS = 400
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
_WORD = re.compile(r"[^\W\d_]{3,}")
_FIGURE = re.compile(r"\d+(?:[.,\u00a0\u202f ]\d{3})*(?:[.,]\d+)?")
_CITATION = re.compile(r"\[\d{1,2}\]")
# A sentence is highlighted when the answer holds this share of its content words...
_WORD_SHARE = 0.5
# ...and it has at least this many (so "Approved." alone is not highlighted for any answer).
_MIN_WORDS = 2
# A figure of fewer digits ("3 days", "page 2") is too common to tie a sentence to an answer.
_MIN_FIGURE_DIGITS = 2
# Words of three letters or more that say nothing about the content, in the UI's languages.
_STOP_WORD_LIST = """
    the and for with that this from are was were has have had not but its his her our their
    which who whom will shall been being than then there these those into onto also can may
    must all any each per such other more most very only about after before under over
    der die das und mit für von den dem des ein eine einer eines einem ist sind war wird
    werden nicht auf aus bei nach über zum zur sich auch als oder wie wurde wurden hat haben
    les des une est sont dans pour par avec que qui sur pas aux ces son ses leur plus été
"""
_STOP_WORDS = frozenset(_STOP_WORD_LIST.split())


def highlighted_markdown(passage: str, answer_text: str, quote: str | None = None) -> str:
    """The passage as Markdown that shows it as typed, with the supporting sentences marked:
    the sentences holding `quote` when it is found in the passage, otherwise those that share
    a figure with the answer or most of their content words."""
    text = passage.replace("\r\n", "\n").replace("\r", "\n")
    sentences = _sentence_spans(text)
    chosen = _quoted(text, sentences, quote) if quote else set()
    if not chosen:
        chosen = _supporting(text, sentences, answer_text)
    parts = []
    position = 0
    for start, end in _runs(text, sentences, chosen):
        parts.append(literal_markdown(text[position:start]))
        parts.append(_marked(text[start:end]))
        position = end
    parts.append(literal_markdown(text[position:]))
    return "".join(parts)


def _runs(text: str, sentences: list[tuple[int, int]], chosen: set[int]) -> list[tuple[int, int]]:
    """The chosen sentences as spans to highlight, neighbours on one line joined in one."""
    runs: list[tuple[int, int]] = []
    for index in sorted(chosen):
        start, end = sentences[index]
        if runs and index - 1 in chosen and "\n" not in text[runs[-1][1] : start]:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """Start and end of each sentence, without the spaces and line breaks around it."""
    spans = []
    position = 0
    for separator in [*_SENTENCE_END.finditer(text), None]:
        end = separator.start() if separator else len(text)
        piece = text[position:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((position + lead, position + len(piece.rstrip())))
        position = separator.end() if separator else end
    return spans


def _quoted(text: str, sentences: list[tuple[int, int]], quote: str) -> set[int]:
    words = quote.split()
    if not words:
        return set()
    pattern = re.compile(r"\s+".join(re.escape(word) for word in words))
    found = pattern.search(text) or re.compile(pattern.pattern, re.IGNORECASE).search(text)
    if found is None:
        return set()
    return {
        index
        for index, (start, end) in enumerate(sentences)
        if start < found.end() and found.start() < end
    }


def _supporting(text: str, sentences: list[tuple[int, int]], answer: str) -> set[int]:
    answer = _CITATION.sub(" ", answer)
    answer_words, answer_figures = _content_words(answer), _figures(answer)
    chosen = set()
    for index, (start, end) in enumerate(sentences):
        sentence = text[start:end]
        words = _content_words(sentence)
        shares_figure = bool(_figures(sentence) & answer_figures)
        share = len(words & answer_words) / len(words) if words else 0.0
        if shares_figure or (len(words) >= _MIN_WORDS and share >= _WORD_SHARE):
            chosen.add(index)
    return chosen


def _content_words(text: str) -> set[str]:
    return {word.casefold() for word in _WORD.findall(text)} - _STOP_WORDS


def _figures(text: str) -> set[str]:
    """The figures of the text as digits alone: `4,750,000` and `4.750.000` are one figure."""
    digits = (re.sub(r"\D", "", figure) for figure in _FIGURE.findall(text))
    return {figure for figure in digits if len(figure) >= _MIN_FIGURE_DIGITS}


def _marked(run: str) -> str:
    """The text in highlights of at most _LABEL_CHARS characters each: a longer directive
    label is not a directive. The text has no line break (those separate runs)."""
    pieces = [run[i : i + _LABEL_CHARS] for i in range(0, len(run), _LABEL_CHARS)]
    return "".join(_OPEN + literal_markdown(piece) + _CLOSE for piece in pieces)
