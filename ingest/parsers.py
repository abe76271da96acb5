"""Files to blocks of text: unstructured for documents, Tesseract for images and scans.

Plain text, Markdown and HTML are read directly (ingest.plain). A PDF is read page by page:
the text layer where a page has one, OCR where it doesn't.
A table of a spreadsheet, a CSV file or a slide becomes one block per row, each cell named
by its column ("Name: Anna Weber; Phone: 4411"), so that any chunk of a long table still
says what its values are. Legacy Word (.doc) is read by antiword; an e-mail (.eml, .msg) is
its subject, its sender and recipients and its body: its attachments are separate documents
(`ingest.email_attachments`).
"""

from __future__ import annotations

import csv
import email
import io
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from email import policy
from email.utils import format_datetime
from pathlib import Path
from typing import Any, cast

from ingest.document import Attachment, Block, BlockKind, ParsedDocument
from ingest.errors import ParseError
from ingest.ocr import ocr_image_file, ocr_pdf_page
from ingest.plain import decode, html_blocks, html_title, markdown_blocks, text_blocks
from settings import OcrSettings

_HEADING_CATEGORIES = {"Title"}
_SKIPPED_CATEGORIES = {"PageBreak", "Header", "Footer", "PageNumber", "Image", "FigureCaption"}
_ALNUM = re.compile(r"[^\W_]", re.UNICODE)
# A word in a European language has a vowel among mostly letters.
_WORDLIKE = re.compile(
    r"^[^\W\d_]*[aeiouyàáâäãåæèéêëìíîïòóôöõøùúûüýœ][^\W\d_]*[.,;:!?)]*$", re.IGNORECASE
)
_MIDNIGHT = re.compile(r"^(\d{4}-\d{2}-\d{2}) 00:00:00$")
# antiword reads a .doc in well under a second; one that takes longer is broken or hostile.
ANTIWORD_TIMEOUT_S = 60
_CSV_SAMPLE_CHARS = 64 * 1024
_CSV_DELIMITERS = ",;\t|"

Parser = Callable[[Path, OcrSettings], ParsedDocument]


def _blocks_from_elements(elements: Iterable[Any], *, table_rows: bool = False) -> list[Block]:
    """Blocks of unstructured's elements; with `table_rows`, a table is one block per row."""
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
        html = getattr(element.metadata, "text_as_html", None)
        if kind == "table" and table_rows and html:
            blocks.extend(_row_blocks(_html_table_rows(html), page))
        else:
            blocks.append(Block(kind, text, page))
    return blocks


def _html_table_rows(html: str) -> list[list[str]]:
    from lxml import html as lxml_html

    table = lxml_html.fragment_fromstring(html, create_parent="div")
    return [
        [" ".join(cell.text_content().split()) for cell in row if cell.tag in ("td", "th")]
        for row in table.iter("tr")
    ]


def _row_blocks(rows: Sequence[Sequence[str]], page: int | None) -> list[Block]:
    """A table's first row names its columns; every other row becomes "Column: value; ..."."""
    rows = [[_cell(value) for value in row] for row in rows]
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    if not body:
        return [Block("table", "; ".join(value for value in header if value), page)]
    names = [name or f"Column {index}" for index, name in enumerate(header, start=1)]
    blocks = []
    for row in body:
        pairs = [
            f"{names[index]}: {value}" if index < len(names) else value
            for index, value in enumerate(row)
            if value
        ]
        blocks.append(Block("table", "; ".join(pairs), page))
    return blocks


def _cell(value: str) -> str:
    value = " ".join(value.split())
    return _MIDNIGHT.sub(r"\1", value)  # a spreadsheet date shows no time of day


def _ocr_blocks(text: str, page: int | None) -> list[Block]:
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return [Block("text", p, page) for p in paragraphs if p]


def _table_rows(rows: list[list[str]]) -> list[Block]:
    return _row_blocks(rows, None)


def parse_markdown(path: Path, ocr: OcrSettings) -> ParsedDocument:
    text = decode(path.read_bytes())
    return ParsedDocument(markdown_blocks(text, _table_rows), parser="markdown")


def parse_text(path: Path, ocr: OcrSettings) -> ParsedDocument:
    return ParsedDocument(text_blocks(decode(path.read_bytes())), parser="text")


def parse_docx(path: Path, ocr: OcrSettings) -> ParsedDocument:
    from unstructured.partition.docx import partition_docx

    return ParsedDocument(_blocks_from_elements(partition_docx(filename=str(path))), parser="docx")


def parse_html(path: Path, ocr: OcrSettings) -> ParsedDocument:
    raw = path.read_bytes()
    document = ParsedDocument(html_blocks(raw, _table_rows), parser="html")
    document.metadata_title = html_title(raw)
    return document


def text_layer_is_usable(text: str, min_chars: int) -> bool:
    """A page's text layer is used when it has enough letters and reads like words; a layer
    of glyph ids (`(cid:12)`) or mojibake from a broken font is OCR'd instead."""
    if len(_ALNUM.findall(text)) < min_chars or text.count("(cid:") > 3:
        return False
    tokens = [token for token in text.split() if sum(ch.isalpha() for ch in token) >= 2]
    if not tokens:
        return True  # figures and codes only: nothing to judge, nothing better to get
    wordlike = sum(1 for token in tokens if _WORDLIKE.search(token))
    return wordlike / len(tokens) >= 0.5


def parse_pdf(path: Path, ocr: OcrSettings) -> ParsedDocument:
    from pypdf import PdfReader
    from unstructured.partition.pdf import partition_pdf

    reader = PdfReader(str(path))
    if reader.is_encrypted and not _opens_without_password(reader):
        raise ParseError(str(path), "the PDF is password-protected; index an unprotected copy")
    page_count = len(reader.pages)
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
        if text_layer_is_usable(" ".join(block.text for block in found), ocr.min_text_chars):
            blocks.extend(found)
        else:
            ocr_pages.append(page)
            box = reader.pages[page - 1].mediabox
            size = (float(box.width), float(box.height))
            max_pixels = ocr.max_megapixels * 10**6
            text = ocr_pdf_page(path, page, ocr.languages, ocr.dpi, size, max_pixels)
            blocks.extend(_ocr_blocks(text, page))
    parser = "pdf+ocr" if ocr_pages else "pdf"
    return ParsedDocument(blocks, pages=page_count, parser=parser, ocr_pages=ocr_pages,
                          metadata_title=_pdf_title(reader))  # fmt: skip


def _pdf_title(reader: Any) -> str:
    """The Title of the PDF's document information, when it holds words."""
    try:
        title = str((reader.metadata or {}).get("/Title") or "")
    except Exception:  # a damaged information dictionary: the title is not worth failing for
        return ""
    title = " ".join(title.split())
    return title if any(ch.isalpha() for ch in title) and len(title) <= 300 else ""


def _opens_without_password(reader: Any) -> bool:
    """A PDF encrypted with an empty user password (only editing restricted) still opens."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # pypdf raises several kinds for unsupported encryption
        return False


def parse_image(path: Path, ocr: OcrSettings) -> ParsedDocument:
    frames = ocr_image_file(path, ocr.languages, ocr.max_megapixels * 10**6)
    multi = len(frames) > 1
    blocks = [b for page, text in frames for b in _ocr_blocks(text, page if multi else None)]
    pages = [page for page, _ in frames]
    return ParsedDocument(blocks, pages=len(frames), parser="ocr", ocr_pages=pages)


def parse_pptx(path: Path, ocr: OcrSettings) -> ParsedDocument:
    """Each slide is a page: its title, text and table rows, then its speaker notes."""
    from pptx import Presentation
    from unstructured.partition.pptx import partition_pptx

    slides = list(Presentation(str(path)).slides)
    elements = partition_pptx(filename=str(path), include_page_breaks=False)
    by_slide: dict[int | None, list[Block]] = {}
    for block in _blocks_from_elements(elements, table_rows=True):
        by_slide.setdefault(block.page, []).append(block)
    blocks: list[Block] = []
    for number, slide in enumerate(slides, start=1):
        blocks.extend(by_slide.pop(number, []))
        frame = slide.notes_slide.notes_text_frame if slide.has_notes_slide else None
        notes = frame.text.strip() if frame is not None else ""
        if notes:
            blocks.append(Block("text", notes, number))
    blocks.extend(block for rest in by_slide.values() for block in rest)
    return ParsedDocument(blocks, pages=len(slides), parser="pptx")


def parse_xlsx(path: Path, ocr: OcrSettings) -> ParsedDocument:
    """Each worksheet is a page; each of its tables a block per row, under its header row."""
    from unstructured.partition.xlsx import partition_xlsx

    elements = partition_xlsx(filename=str(path))
    return ParsedDocument(_blocks_from_elements(elements, table_rows=True), parser="xlsx")


def parse_csv(path: Path, ocr: OcrSettings) -> ParsedDocument:
    """UTF-8 (with or without a byte-order mark), else Windows-1252; the delimiter sniffed."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")
    sample = text[:_CSV_SAMPLE_CHARS]
    if len(text) > _CSV_SAMPLE_CHARS and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only, or the sniffer guesses wrong
    dialect: type[csv.Dialect] | csv.Dialect
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=_CSV_DELIMITERS)
    except csv.Error:  # one column, or too irregular to tell: plain commas
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text, newline=""), dialect))
    return ParsedDocument(_row_blocks(rows, None), parser="csv")


def parse_odt(path: Path, ocr: OcrSettings) -> ParsedDocument:
    from unstructured.partition.odt import partition_odt

    return ParsedDocument(_blocks_from_elements(partition_odt(filename=str(path))), parser="odt")


def parse_rtf(path: Path, ocr: OcrSettings) -> ParsedDocument:
    from unstructured.partition.rtf import partition_rtf

    return ParsedDocument(_blocks_from_elements(partition_rtf(filename=str(path))), parser="rtf")


def parse_epub(path: Path, ocr: OcrSettings) -> ParsedDocument:
    from unstructured.partition.epub import partition_epub

    return ParsedDocument(_blocks_from_elements(partition_epub(filename=str(path))), parser="epub")


def parse_doc(path: Path, ocr: OcrSettings) -> ParsedDocument:
    """Legacy Word through antiword, one paragraph a line. A .doc that is really RTF or DOCX
    (Word saves both under that name on request) goes to that format's parser."""
    with path.open("rb") as file:
        head = file.read(8)
    if head.startswith(b"{\\rtf"):
        return parse_rtf(path, ocr)
    if head.startswith(b"PK\x03\x04"):
        return parse_docx(path, ocr)
    try:
        result = subprocess.run(
            ["antiword", "-w", "0", "-m", "UTF-8.txt", str(path)],
            capture_output=True,
            timeout=ANTIWORD_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ParseError(str(path), "antiword is not installed (make setup installs it)") from exc
    except subprocess.TimeoutExpired as exc:
        raise ParseError(str(path), f"antiword took longer than {ANTIWORD_TIMEOUT_S} s") from exc
    if result.returncode != 0:
        reason = " ".join(result.stderr.decode("utf-8", "replace").split())[:300]
        raise ParseError(str(path), f"antiword failed: {reason or f'exit {result.returncode}'}")
    lines = (
        " ".join(line.split()) for line in result.stdout.decode("utf-8", "replace").split("\n")
    )
    return ParsedDocument([Block("text", line) for line in lines if line], parser="doc")


def _email_blocks(
    subject: str, headers: Sequence[tuple[str, str]], body: list[Block]
) -> list[Block]:
    blocks = [Block("heading", " ".join(subject.split()))] if subject.strip() else []
    header_lines = [f"{name}: {' '.join(value.split())}" for name, value in headers if value]
    if header_lines:
        blocks.append(Block("text", "\n".join(header_lines)))
    return blocks + body


def parse_eml(path: Path, ocr: OcrSettings) -> ParsedDocument:
    """The message's subject, sender, recipients and body (plain text preferred over HTML)."""
    from unstructured.partition.html import partition_html
    from unstructured.partition.text import partition_text

    with path.open("rb") as file:
        message = email.message_from_binary_file(file, policy=policy.default)
    body: list[Block] = []
    part = message.get_body(preferencelist=("plain", "html"))
    if part is not None:
        try:
            content = cast(str, part.get_content())
        except LookupError:  # a charset Python doesn't know: its bytes as UTF-8, as far as they go
            content = cast(bytes, part.get_payload(decode=True) or b"").decode("utf-8", "replace")
        if part.get_content_subtype() == "html":
            body = _blocks_from_elements(partition_html(text=content))
        elif content.strip():
            body = _blocks_from_elements(partition_text(text=content))
    headers = [(name, str(message.get(name, ""))) for name in ("From", "To", "Cc", "Date")]
    return ParsedDocument(
        _email_blocks(str(message.get("Subject", "")), headers, body), parser="eml"
    )


def parse_msg(path: Path, ocr: OcrSettings) -> ParsedDocument:
    """An Outlook message: its subject, sender, recipients and body (unstructured, oxmsg)."""
    from oxmsg import Message
    from unstructured.partition.msg import partition_msg

    message = Message.load(str(path))
    transport = {name.lower(): value for name, value in message.message_headers.items()}
    to = transport.get("to") or ", ".join(
        f"{r.name} <{r.email_address}>" if r.name and r.email_address else r.name or r.email_address
        for r in message.recipients
    )
    sent = message.sent_date
    headers = [
        ("From", message.sender or ""),
        ("To", to),
        ("Cc", transport.get("cc", "")),
        ("Date", format_datetime(sent) if sent else ""),
    ]
    body = _blocks_from_elements(partition_msg(filename=str(path), process_attachments=False))
    return ParsedDocument(_email_blocks(message.subject, headers, body), parser="msg")


PARSERS: dict[str, Parser] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".txt": parse_text,
    ".docx": parse_docx,
    ".doc": parse_doc,
    ".odt": parse_odt,
    ".rtf": parse_rtf,
    ".epub": parse_epub,
    ".pptx": parse_pptx,
    ".xlsx": parse_xlsx,
    ".csv": parse_csv,
    ".tsv": parse_csv,
    ".eml": parse_eml,
    ".msg": parse_msg,
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


def parse(path: Path, ocr: OcrSettings, nesting: int = 0) -> ParsedDocument:
    """The file's text; for an e-mail, each attachment's too (`nesting`: how many messages
    deep this one is attached)."""
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
    if path.suffix.lower() in _EMAIL_SUFFIXES:
        _parse_attachments(path, ocr, nesting, document)
    return document


_EMAIL_SUFFIXES = (".eml", ".msg")
_MAX_NESTING = 3  # a message attached to a message attached to a message: no deeper


def _parse_attachments(path: Path, ocr: OcrSettings, nesting: int, into: ParsedDocument) -> None:
    from ingest.email_attachments import attachments

    try:
        found = attachments(path)
    except ParseError as exc:
        into.notes.append(f"attachments could not be read: {exc.reason}")
        return
    with tempfile.TemporaryDirectory(prefix="rag-attachment-") as folder:
        for index, (name, content) in enumerate(found, 1):
            suffix = Path(name).suffix.lower()
            if parser_for(Path(name)) is None:
                into.notes.append(
                    f"attachment {name!r} skipped: unsupported file type {suffix or '(none)'}"
                )
                continue
            if suffix in _EMAIL_SUFFIXES and nesting + 1 >= _MAX_NESTING:
                into.notes.append(
                    f"attachment {name!r} skipped: messages nested more than {_MAX_NESTING} deep"
                )
                continue
            saved = Path(folder) / f"attachment-{index}{suffix}"  # the name may not fit a path
            saved.write_bytes(content)
            try:
                document = parse(saved, ocr, nesting + 1)
            except ParseError as exc:
                into.notes.append(f"attachment {name!r} failed: {exc.reason}")
                continue
            finally:
                saved.unlink()
            into.attachments.append(Attachment(name, document))
            into.notes.extend(f"in attachment {name!r}: {note}" for note in document.notes)
