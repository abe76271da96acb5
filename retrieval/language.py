"""Which language a document is written in, from its most frequent function words.

Good enough to pick the stemmer and stopwords of keyword search and to filter by language:
a few hundred characters of running text are classified reliably; shorter or mixed text
falls back to the language with the most hits, or "" when none is found. A question is
short: `question_language` takes two function words, and no tie, as enough.
"""

from __future__ import annotations

import re
from collections import Counter


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


_FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "en": _vocabulary(
        "the and of to in is that for it with as was on are be by this from or an have not "
        "which at but were has their they all will been would there its can more"
    ),
    "fr": _vocabulary(
        "le la les des du de et est un une que qui dans pour pas sur au aux par avec sont "
        "ce cette ou il elle nous vous ne se plus être été leur ces"
    ),
    "de": _vocabulary(
        "der die das und ist nicht ein eine zu den von mit sich des auf für im dem auch "
        "es an werden wird bei oder sind aus nach wie einer über"
    ),
    "nl": _vocabulary(
        "de het een en van is dat op te zijn voor met niet aan er ook als bij door naar "
        "worden wordt maar om deze dit uit"
    ),
    "it": _vocabulary(
        "il lo la gli le di che è e un una per non sono con del della dei nel alla come "
        "più anche questo questa ha essere"
    ),
    "es": _vocabulary(
        "el la los las de que y en un una es por con no para se del al lo como más pero "
        "sus su este esta son está ser"
    ),
    "pt": _vocabulary(
        "o a os as de que e do da em um uma para com não por se dos das no na mais ao "
        "como mas foi ser são está"
    ),
}
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_SAMPLE_CHARS = 5000
# Fewer function words than this and the text is too short or not prose: no verdict.
_MIN_HITS = 3
_MIN_QUESTION_HITS = 2


def _function_word_hits(text: str) -> Counter[str]:
    """How many of the text's words are function words of each known language."""
    words = [word.lower() for word in _WORD.findall(text[:_SAMPLE_CHARS])]
    return Counter(
        {code: sum(word in vocabulary for word in words) for code, vocabulary in
         _FUNCTION_WORDS.items()}
    )  # fmt: skip


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language among those known, or "" when unsure."""
    code, count = _function_word_hits(text).most_common(1)[0]
    return code if count >= _MIN_HITS else ""


def question_language(text: str) -> str:
    """ISO 639-1 code of a short text's language, or "" when two languages tie or fewer
    than two of its words are function words."""
    (code, count), (_, runner_up) = _function_word_hits(text).most_common(2)
    return code if count >= _MIN_QUESTION_HITS and count > runner_up else ""
