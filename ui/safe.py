"""Rendering document-derived text without letting it act: no HTML, links or images."""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~:$=])")


def literal_markdown(text: str) -> str:
    """Escape text so Markdown shows it as typed: `![x](http://host)` stays characters and
    never becomes an image the browser would fetch. Line breaks are kept."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return escaped.replace("\n", "  \n")
