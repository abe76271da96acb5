"""Direct readers for plain text, Markdown and HTML.

These formats say what they are in the text itself, so they are read here with the standard
library: no layout models and no language model per paragraph. A share's thousands of notes
and exported pages go through in milliseconds each.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.parser import HTMLParser

from ingest.document import Block

_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1")
_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([\w-]+)""", re.IGNORECASE)


def decode(raw: bytes, declared: str | None = None) -> str:
    """UTF-8 (with or without a byte-order mark), else the declared charset, else cp1252;
    bytes that fit none are replaced, so a file with a broken encoding still gets indexed."""
    for encoding in ("utf-8-sig", declared, "cp1252"):
        if not encoding:
            continue
        try:
            return raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    return raw.decode("utf-8", errors="replace")


def text_blocks(text: str) -> list[Block]:
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return [Block("text", p) for p in paragraphs if p]


def _inline(text: str) -> str:
    text = _LINK.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    return " ".join(text.split())


def _cells(line: str) -> list[str]:
    return [_inline(cell) for cell in line.strip().strip("|").split("|")]


def markdown_blocks(text: str, rows: Callable[[list[list[str]]], list[Block]]) -> list[Block]:
    """Headings, paragraphs, list items, code and tables (a block per row under its header)."""
    blocks: list[Block] = []
    paragraph: list[str] = []
    lines = text.splitlines()

    def flush() -> None:
        if paragraph:
            joined = _inline(" ".join(paragraph))
            if joined:
                blocks.append(Block("text", joined))
            paragraph.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if _FENCE.match(line):
            flush()
            fence = _FENCE.match(line).group(1)  # type: ignore[union-attr]
            code = []
            index += 1
            while index < len(lines) and not lines[index].lstrip().startswith(fence):
                code.append(lines[index])
                index += 1
            if "\n".join(code).strip():
                blocks.append(Block("text", "\n".join(code).strip()))
        elif heading := _ATX_HEADING.match(line):
            flush()
            if heading.group(2):
                blocks.append(Block("heading", _inline(heading.group(2))))
        elif line.strip() and _SETEXT_UNDERLINE.match(following) and not paragraph:
            blocks.append(Block("heading", _inline(line)))
            index += 1
        elif "|" in line and _TABLE_RULE.match(following):
            flush()
            table = [_cells(line)]
            index += 2
            while index < len(lines) and "|" in lines[index] and lines[index].strip():
                table.append(_cells(lines[index]))
                index += 1
            blocks.extend(rows(table))
            continue
        elif _LIST_ITEM.match(line):
            flush()
            paragraph.append(_LIST_ITEM.sub("", line))
        elif not line.strip():
            flush()
        else:
            paragraph.append(line.strip())
        index += 1
    flush()
    return blocks


class _HtmlBlocks(HTMLParser):
    _HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
    _BLOCKS = {"p", "div", "li", "pre", "blockquote", "section", "article", "dd", "dt",
               "br", "caption", "figcaption", "address"}  # fmt: skip
    _IGNORED = {"script", "style", "head", "title", "noscript", "template", "svg"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []  # (kind, text)
        self.tables: list[list[list[str]]] = []
        self._text: list[str] = []
        self._ignored = 0
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._table_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._IGNORED:
            self._ignored += 1
        elif tag == "table":
            self._flush()
            self._table_depth += 1
            if self._table_depth == 1:
                self.tables.append([])
                self.blocks.append(("table", str(len(self.tables) - 1)))
        elif tag == "tr" and self._table_depth == 1:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag in self._HEADINGS or tag in self._BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._IGNORED:
            self._ignored = max(0, self._ignored - 1)
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self.tables:
                self.tables[-1].append(self._row)
            self._row = None
        elif tag == "table":
            self._table_depth = max(0, self._table_depth - 1)
        elif tag in self._HEADINGS:
            self._flush("heading")
        elif tag in self._BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._ignored:
            return
        if self._cell is not None:
            self._cell.append(data)
        elif not self._table_depth:
            self._text.append(data)

    def _flush(self, kind: str = "text") -> None:
        text = " ".join("".join(self._text).split())
        self._text = []
        if text:
            self.blocks.append((kind, text))

    def close(self) -> None:
        super().close()
        self._flush()


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)


def html_title(raw: bytes) -> str:
    """The page's <title>, as text; empty when it has none."""
    found = _TITLE.search(raw[:65536])
    if not found:
        return ""
    declared = _CHARSET.search(raw[:4096])
    text = decode(found.group(1), declared.group(1).decode("ascii") if declared else None)
    return " ".join(html.unescape(text).split())[:300]


def html_blocks(raw: bytes, rows: Callable[[list[list[str]]], list[Block]]) -> list[Block]:
    declared = _CHARSET.search(raw[:4096])
    parser = _HtmlBlocks()
    parser.feed(decode(raw, declared.group(1).decode("ascii") if declared else None))
    parser.close()
    blocks: list[Block] = []
    for kind, text in parser.blocks:
        if kind == "table":
            blocks.extend(rows(parser.tables[int(text)]))
        else:
            blocks.append(Block("heading" if kind == "heading" else "text", text))
    return blocks
