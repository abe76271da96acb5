"""Blocks to chunks that follow the document's structure.

A chunk never spans two pages or two sections, so its citation is exact; the document's
title and the heading a passage sits under travel with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ingest.document import Block, ParsedDocument

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


@dataclass(frozen=True)
class Passage:
    text: str
    page: int | None
    section: str


def passages(document: ParsedDocument, title: str, max_chars: int) -> list[Passage]:
    result: list[Passage] = []
    section = ""
    buffer: list[str] = []
    buffer_page: int | None = None

    def flush() -> None:
        nonlocal buffer
        if buffer:
            result.append(Passage("\n".join(buffer), buffer_page, section))
        buffer = []

    for block in document.blocks:
        if block.kind == "heading":
            flush()
            section = "" if block.text == title else block.text
            continue
        if buffer and (block.page != buffer_page or _length(buffer) + len(block.text) > max_chars):
            flush()
        for piece in _split(block, max_chars):
            if buffer and _length(buffer) + len(piece) > max_chars:
                flush()
            buffer.append(piece)
            buffer_page = block.page
    flush()
    return result


def _length(buffer: list[str]) -> int:
    return sum(len(text) + 1 for text in buffer)


def _split(block: Block, max_chars: int) -> Iterator[str]:
    """A block longer than a chunk is cut at sentence ends, then at spaces, then hard."""
    if len(block.text) <= max_chars:
        yield block.text
        return
    current = ""
    for sentence in _SENTENCE_END.split(block.text):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            if current:
                yield current
                current = ""
            yield sentence[:cut].strip()
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > max_chars:
            yield current
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        yield current
