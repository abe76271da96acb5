"""Files to blocks of text: unstructured for documents, Tesseract for images and scans.

A PDF is read page by page: the text layer where a page has one, OCR where it doesn't.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ingest.document import Block, BlockKind, ParsedDocument
from ingest.errors import ParseError
from ingest.ocr import ocr_image_file, ocr_pdf_page
from settings import OcrSettings

_HEADING_CATEGORIES = {"Title"}
_SKIPPED_CATEGORIES = {"PageBreak", "Header", "Footer", "PageNumber", "Image", "FigureCaption"}
_ALNUM = re.compile(r"[^\W_]", re.UNICODE)

Parser = Callable[[Path, OcrSettings], ParsedDocument]


def _blocks_from_elements(elements: Iterable[Any]) -> list[Block]:
    blocks = []
    for element in elements:
        category = getattr(element, "category", "")
        text = (getattr(element, "text", "") or "").strip()
        if not text or category in _SKIPPED_CATEGORIES:
            continue
        kind: BlockKind = "text"
        if category in _HEADING_CATEGORIES:
            kind = "heading"
        elif category == "Table":
            kind = "table"
        page = getattr(element.metadata, "page_number", None)
        blocks.append(Block(kind, text, page))
    return blocks


def _ocr_blocks(text: str, page: int | None) -> list[Block]:
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return [Block("text", p, page) for p in paragraphs if p]


def parse_markdown(path: Path, ocr: OcrSettings) -> ParsedDocument:
    from unstructured.partition.md import partition_md

    return ParsedDocument(
        _blocks_from_elements(partition_md(filename=str(path))), parser="markdown"
    )


def parse_text(path: Path, ocr: OcrSettings) -> ParsedDocument:
    from unstructured.partition.text import partition_text

    return ParsedDocument(_blocks_from_elements(partition_text(filename=str(path))), parser="text")


def parse_docx(path: Path, ocr: OcrSettings) -> ParsedDocument:
    from unstructured.partition.docx import partition_docx

    return ParsedDocument(_blocks_from_elements(partition_docx(filename=str(path))), parser="docx")


def parse_html(path: Path, ocr: OcrSettings) -> ParsedDocument:
    from unstructured.partition.html import partition_html

    return ParsedDocument(_blocks_from_elements(partition_html(filename=str(path))), parser="html")


def parse_pdf(path: Path, ocr: OcrSettings) -> ParsedDocument:
    from pypdf import PdfReader
    from unstructured.partition.pdf import partition_pdf

    page_count = len(PdfReader(str(path)).pages)
    text_layer = _blocks_from_elements(
        partition_pdf(filename=str(path), strategy="fast", languages=ocr.languages.split("+"))
    )
    by_page: dict[int, list[Block]] = {}
    for block in text_layer:
        by_page.setdefault(block.page or 1, []).append(block)
    blocks: list[Block] = []
    ocr_pages = []
    for page in range(1, page_count + 1):
        found = by_page.get(page, [])
        letters = sum(len(_ALNUM.findall(block.text)) for block in found)
        if letters >= ocr.min_text_chars:
            blocks.extend(found)
        else:
            ocr_pages.append(page)
            blocks.extend(_ocr_blocks(ocr_pdf_page(path, page, ocr.languages, ocr.dpi), page))
    parser = "pdf+ocr" if ocr_pages else "pdf"
    return ParsedDocument(blocks, pages=page_count, parser=parser, ocr_pages=ocr_pages)


def parse_image(path: Path, ocr: OcrSettings) -> ParsedDocument:
    frames = ocr_image_file(path, ocr.languages)
    multi = len(frames) > 1
    blocks = [b for page, text in frames for b in _ocr_blocks(text, page if multi else None)]
    pages = [page for page, _ in frames]
    return ParsedDocument(blocks, pages=len(frames), parser="ocr", ocr_pages=pages)


PARSERS: dict[str, Parser] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".docx": parse_docx,
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".png": parse_image,
    ".jpg": parse_image,
    ".jpeg": parse_image,
    ".tif": parse_image,
    ".tiff": parse_image,
}


def parser_for(path: Path) -> Parser | None:
    return PARSERS.get(path.suffix.lower())


def parse(path: Path, ocr: OcrSettings) -> ParsedDocument:
    parser = parser_for(path)
    if parser is None:
        raise ParseError(str(path), f"unsupported file type {path.suffix or '(none)'}")
    try:
        document = parser(path, ocr)
    except ParseError:
        raise
    except Exception as exc:  # parsers raise many kinds; the file fails, the run goes on
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ParseError(str(path), f"{type(exc).__name__}: {reason}") from exc
    if not document.pages:
        document.pages = max((b.page or 1 for b in document.blocks), default=1)
    return document
