"""Rendering document-derived text without letting it act: no HTML, links or images."""

from __future__ import annotations

import re

_SPACES_AND_CONTROLS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~:$=])")
# What Streamlit's Markdown (GitHub's flavour) turns into a link by itself, escaped or not:
# a web address (`https://`, `www.`) or an e-mail address. An invisible word joiner inside
# each breaks the pattern and leaves the text as it reads.
_AUTOLINK = re.compile(
    r"(?<=https)(?=\\:) | (?<=http)(?=\\:) | (?<=ftp)(?=\\:) | (?<=www)(?=\\\.) | (?=@)",
    re.IGNORECASE | re.VERBOSE,
)
WORD_JOINER = "\u2060"


def literal_markdown(text: str) -> str:
    """Escape text so Markdown shows it as typed: `![x](http://host)` stays characters and
    never becomes an image the browser would fetch, nor a bare address a link. Line breaks
    are kept."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    escaped = _AUTOLINK.sub(WORD_JOINER, escaped)
    return escaped.replace("\n", "  \n")


def literal_label(text: str) -> str:
    """Escape text for a one-line label (an expander's title, a button, a caption): as
    `literal_markdown`, with line breaks, tabs and control characters shown as one space."""
    return literal_markdown(_SPACES_AND_CONTROLS.sub(" ", text).strip())
