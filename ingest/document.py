"""A parsed document: the blocks of text a parser found, in reading order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BlockKind = Literal["heading", "text", "table"]


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    text: str
    page: int | None = None


@dataclass
class ParsedDocument:
    blocks: list[Block]
    pages: int = 0
    parser: str = ""
    ocr_pages: list[int] = field(default_factory=list)
    # Files attached to an e-mail, each parsed as a document of its own.
    attachments: list[Attachment] = field(default_factory=list)
    # What inside the file could not be read (an attachment of an unsupported type...).
    notes: list[str] = field(default_factory=list)
    # The title the file's metadata gives (an HTML <title>, a PDF's or DOCX's Title).
    metadata_title: str = ""

    def total_pages(self) -> int:
        return self.pages + sum(a.document.total_pages() for a in self.attachments)

    def title(self, fallback: str) -> str:
        for block in self.blocks[:5]:
            if block.kind == "heading":
                return block.text
        return fallback


@dataclass
class Attachment:
    name: str
    document: ParsedDocument
