"""Generate the evaluation corpus and its golden question set.

The corpus is the file share of the fictional Trimoselle Health Group, a hospital group with
sites in France (Valmont), Germany (Sarreck) and Luxembourg, plus third-party licence texts
copied from the machine (Debian's /usr/share/common-licenses and, where present, licence
files shipped inside installed Python packages).

    python -m ops.tools.make_eval_corpus OUT_DIR

writes OUT_DIR/documents/ (replaced if it exists) and OUT_DIR/golden.jsonl. The output is
deterministic: fixed timestamps in every file and as every file's modification time, seeded
scan noise, no randomness elsewhere.

The authored texts live in ops/tools/eval_corpus/:

    documents/**/*.md   one document each: a front matter (`lang`, `format`, and `from`,
                        `to`, `subject`, `date` for e-mails) and a Markdown body; the output
                        path is the source path with the format's extension. Formats: md,
                        txt, html, docx, pdf (text layer), scan-pdf, png, tiff (scans), eml,
                        csv (the body's table). `<!-- page -->` starts a new page.
    templates/*.md      bodies with {placeholders}, filled from the records in *.json
    licences.json       the licence texts to copy and the format to write each in
    questions.jsonl     the golden questions; the page of a paged source is computed here
                        from where the facts are, and every fact must occur in its source.
                        Each has a `split`: "dev" (tune on it) or "test" (held out, only
                        read). The split was drawn once, before any result was looked at: per
                        stratum (question language x answerable or not), questions sorted by
                        the SHA-256 of their id, alternately dev and test. New questions get
                        their split the same way. `document_language` is written here from
                        the source document's language.
"""

from __future__ import annotations

import argparse
import csv
import email.policy
import glob
import html
import io
import json
import os
import re
import shutil
import sys
import sysconfig
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path, PurePosixPath
from typing import Any

from docx import Document
from PIL import Image

from ops.tools.make_sample_share import (
    A4_MARGIN,
    A4_SIZE,
    FIXED_TIME,
    SCAN_DPI,
    Block,
    docx_bytes,
    image_pdf,
    png_bytes,
    render_scan,
    text_pdf,
)

DATA_DIR = Path(__file__).resolve().parent / "eval_corpus"
ORGANISATION = "Trimoselle Health Group"
MAIL_DOMAIN = "trimoselle.example"
LANGUAGES = ("en", "fr", "de")
EXTENSIONS = {
    "md": ".md",
    "txt": ".txt",
    "html": ".html",
    "docx": ".docx",
    "pdf": ".pdf",
    "scan-pdf": ".pdf",
    "png": ".png",
    "tiff": ".tiff",
    "eml": ".eml",
    "csv": ".csv",
}
SCAN_FORMATS = {"scan-pdf", "png", "tiff"}
PAGED_FORMATS = {"pdf", "scan-pdf", "tiff"}
PAGE_BREAK = "<!-- page -->"
PDF_PAGE_MAX_CHARS = 5000  # more text than fits on a PDF page in 11 pt Helvetica
SITE_PACKAGES = "site-packages:"
SPLITS = ("dev", "test")


class CorpusError(Exception):
    """The corpus cannot be generated; the message says which input is at fault."""


@dataclass(frozen=True)
class MdBlock:
    """One block of a document body: title, heading, text, bullet, table or page break."""

    kind: str
    text: str = ""
    rows: tuple[tuple[str, ...], ...] = ()


@dataclass
class Source:
    """A document to write: where, in which language and format, and its body."""

    path: str
    lang: str
    fmt: str
    body: str
    meta: dict[str, str] = field(default_factory=dict)
    verbatim: bytes | None = None

    @property
    def title(self) -> str:
        for block in parse_body(self.body):
            if block.kind == "title":
                return block.text
        return self.meta.get("subject", PurePosixPath(self.path).stem)


@dataclass(frozen=True)
class Rendered:
    """A written document: its bytes and the text of each page (one entry if unpaged)."""

    source: Source
    data: bytes
    pages: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Reading the authored sources


def split_front_matter(text: str, origin: str) -> tuple[dict[str, str], str]:
    if not text.startswith("---\n"):
        raise CorpusError(f"{origin}: no front matter (a first line '---')")
    head, sep, body = text[4:].partition("\n---\n")
    if not sep:
        raise CorpusError(f"{origin}: front matter is not closed by a line '---'")
    meta: dict[str, str] = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        if not colon:
            raise CorpusError(f"{origin}: front matter line without 'key: value': {line!r}")
        meta[key.strip()] = value.strip()
    return meta, body


def make_source(rel_stem: str, meta: dict[str, str], body: str, origin: str) -> Source:
    lang = meta.pop("lang", "")
    fmt = meta.pop("format", "md")
    if lang not in LANGUAGES:
        raise CorpusError(f"{origin}: lang must be one of {', '.join(LANGUAGES)}, not {lang!r}")
    if fmt not in EXTENSIONS:
        raise CorpusError(f"{origin}: unknown format {fmt!r}")
    return Source(rel_stem + EXTENSIONS[fmt], lang, fmt, body, meta)


def authored_sources(data_dir: Path) -> list[Source]:
    root = data_dir / "documents"
    sources = []
    for path in sorted(root.rglob("*.md")):
        origin = str(path.relative_to(data_dir))
        meta, body = split_front_matter(path.read_text(encoding="utf-8"), origin)
        stem = path.relative_to(root).with_suffix("").as_posix()
        sources.append(make_source(stem, meta, body, origin))
    return sources


def templated_sources(data_dir: Path) -> list[Source]:
    """Each record of templates/NAME.json filled into templates/NAME.LANG.md."""
    sources = []
    for records_path in sorted((data_dir / "templates").glob("*.json")):
        records = json.loads(records_path.read_text(encoding="utf-8"))
        for index, record in enumerate(records):
            origin = f"{records_path.name} record {index + 1}"
            template_path = records_path.with_name(f"{records_path.stem}.{record['lang']}.md")
            template = template_path.read_text(encoding="utf-8")
            values = {key: format_value(value) for key, value in record.items()}
            try:
                filled = template.format(**values)
            except KeyError as missing:
                raise CorpusError(
                    f"{origin}: no value for {missing} in {template_path.name}"
                ) from None
            meta, body = split_front_matter(filled, origin)
            sources.append(make_source(record["path"], meta, body, origin))
    return sources


def format_value(value: Any) -> str:
    """Lists of pairs become Markdown table rows; everything else its string."""
    if isinstance(value, list):
        return "\n".join(f"| {name} | {text} |" for name, text in value)
    return str(value)


def licence_sources(data_dir: Path) -> list[Source]:
    entries = json.loads((data_dir / "licences.json").read_text(encoding="utf-8"))
    sources = []
    for entry in entries:
        found = find_licence_file(entry["source"])
        if found is None:
            if entry.get("optional"):
                print(
                    f"make_eval_corpus: skipped, not installed: {entry['source']}", file=sys.stderr
                )
                continue
            raise CorpusError(f"licence text not found: {entry['source']}")
        text = found.read_text(encoding="utf-8", errors="replace")
        body = f"# {entry['title']}\n\n" + licence_body(text)
        verbatim = found.read_bytes() if entry["format"] == "txt" else None
        meta = {"lang": "en", "format": entry["format"]}
        source = make_source(entry["path"], meta, body, entry["source"])
        source.verbatim = verbatim
        sources.append(source)
    return sources


def find_licence_file(spec: str) -> Path | None:
    if spec.startswith(SITE_PACKAGES):
        pattern = str(Path(sysconfig.get_paths()["purelib"]) / spec.removeprefix(SITE_PACKAGES))
        matches = sorted(glob.glob(pattern))
        return Path(matches[-1]) if matches else None
    path = Path(spec)
    return path if path.is_file() else None


def licence_body(text: str) -> str:
    """Plain licence text as Markdown paragraphs: short lines without a full stop are headings."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    out = []
    for paragraph in paragraphs:
        if not paragraph or set(paragraph) <= set("-=*_ "):
            continue
        is_heading = len(paragraph) < 70 and not paragraph.endswith((".", ",", ";", ":"))
        out.append(f"## {paragraph}" if is_heading else escape_markdown(paragraph))
    return "\n\n".join(out) + "\n"


def escape_markdown(paragraph: str) -> str:
    """A plain paragraph that would parse as a list item, heading or table keeps its text."""
    return (
        "\\" + paragraph if paragraph[0] in "-*#|" or re.match(r"\d+\. ", paragraph) else paragraph
    )


# ---------------------------------------------------------------------------------------------
# Markdown bodies


def parse_body(body: str) -> list[MdBlock]:
    blocks: list[MdBlock] = []
    paragraph: list[str] = []
    table: list[tuple[str, ...]] = []

    def flush() -> None:
        if paragraph:
            blocks.append(MdBlock("text", " ".join(paragraph)))
            paragraph.clear()
        if table:
            blocks.append(MdBlock("table", rows=tuple(table)))
            table.clear()

    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("|"):
            if paragraph:
                flush()
            if not re.fullmatch(r"[|\-: ]+", line):
                table.append(tuple(cell.strip() for cell in line.strip("|").split("|")))
            continue
        if not line or line == PAGE_BREAK or re.match(r"(#{1,3} |[-*] )", line):
            flush()
        if line == PAGE_BREAK:
            blocks.append(MdBlock("page"))
        elif line.startswith("# "):
            blocks.append(MdBlock("title", line[2:].strip()))
        elif line.startswith(("## ", "### ")):
            blocks.append(MdBlock("heading", line.lstrip("#").strip()))
        elif line.startswith(("- ", "* ")):
            blocks.append(MdBlock("bullet", line[2:].strip()))
        elif line:
            paragraph.append(line.removeprefix("\\"))
    flush()
    return blocks


def plain_lines(block: MdBlock) -> list[str]:
    if block.kind == "bullet":
        return [f"- {block.text}"]
    if block.kind == "table":
        return [" | ".join(row) for row in block.rows]
    return [block.text] if block.text else []


def body_text(blocks: Iterable[MdBlock]) -> str:
    return "\n".join(line for block in blocks for line in plain_lines(block))


def split_pages(blocks: Sequence[MdBlock]) -> list[list[MdBlock]]:
    pages: list[list[MdBlock]] = [[]]
    for block in blocks:
        if block.kind == "page":
            pages.append([])
        else:
            pages[-1].append(block)
    return [page for page in pages if page]


# ---------------------------------------------------------------------------------------------
# Writers: each returns the bytes and the text of each page


def write_markdown(source: Source) -> Rendered:
    text = source.body.replace(PAGE_BREAK + "\n", "").lstrip("\n")
    return Rendered(source, text.encode(), (body_text(parse_body(source.body)),))


def write_text(source: Source) -> Rendered:
    blocks = parse_body(source.body)
    if source.verbatim is not None:
        return Rendered(source, source.verbatim, (source.verbatim.decode(errors="replace"),))
    lines: list[str] = []
    for block in blocks:
        if block.kind in ("title", "heading"):
            rule = "=" if block.kind == "title" else "-"
            lines += [block.text, rule * len(block.text), ""]
        elif block.kind != "page":
            lines += [*plain_lines(block), ""]
    return Rendered(source, "\n".join(lines).encode(), (body_text(blocks),))


def write_html(source: Source) -> Rendered:
    blocks = parse_body(source.body)
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{source.lang}">',
        f'<head><meta charset="utf-8"><title>{html.escape(source.title)}</title></head>',
        "<body>",
    ]
    in_list = False
    for block in blocks:
        if in_list and block.kind != "bullet":
            parts.append("</ul>")
        if block.kind == "bullet" and not in_list:
            parts.append("<ul>")
        in_list = block.kind == "bullet"
        parts.append(html_block(block))
    parts += ["</ul>"] if in_list else []
    parts += ["</body>", "</html>", ""]
    return Rendered(source, "\n".join(parts).encode(), (body_text(blocks),))


def html_block(block: MdBlock) -> str:
    text = html.escape(block.text)
    if block.kind == "table":
        header, *rows = block.rows
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    tags = {"title": "h1", "heading": "h2", "text": "p", "bullet": "li"}
    tag = tags.get(block.kind)
    return f"<{tag}>{text}</{tag}>" if tag else ""


def write_docx(source: Source) -> Rendered:
    blocks = parse_body(source.body)
    document = Document()
    for block in blocks:
        if block.kind == "title":
            document.add_heading(block.text, level=1)
        elif block.kind == "heading":
            document.add_heading(block.text, level=2)
        elif block.kind == "text":
            document.add_paragraph(block.text)
        elif block.kind == "bullet":
            document.add_paragraph(block.text, style="List Bullet")
        elif block.kind == "table":
            add_docx_table(document, block.rows)
    author = source.meta.get("author", ORGANISATION)
    return Rendered(source, docx_bytes(document, source.title, author), (body_text(blocks),))


def add_docx_table(document: Any, rows: Sequence[Sequence[str]]) -> None:
    table = document.add_table(rows=len(rows), cols=len(rows[0]))
    table.style = "Table Grid"
    for cells, row in zip(table.rows, rows, strict=True):
        for cell, text in zip(cells.cells, row, strict=True):
            cell.text = text


def write_csv(source: Source) -> Rendered:
    tables = [block for block in parse_body(source.body) if block.kind == "table"]
    if len(tables) != 1:
        raise CorpusError(f"{source.path}: a csv document needs exactly one table")
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(tables[0].rows)
    return Rendered(source, buffer.getvalue().encode(), (body_text(tables),))


def write_eml(source: Source) -> Rendered:
    blocks = parse_body(source.body)
    missing = {"from", "to", "subject", "date"} - source.meta.keys()
    if missing:
        raise CorpusError(f"{source.path}: an e-mail needs {', '.join(sorted(missing))}")
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = source.meta["from"]
    message["To"] = source.meta["to"]
    message["Subject"] = source.meta["subject"]
    message["Date"] = format_datetime(document_time(source))
    message["Message-ID"] = f"<{PurePosixPath(source.path).stem}@{MAIL_DOMAIN}>"
    message.set_content(write_text(source).data.decode())
    return Rendered(source, message.as_bytes(), (body_text(blocks),))


# PDF and scans ------------------------------------------------------------------------------


def pdf_blocks(blocks: Iterable[MdBlock]) -> list[Block]:
    out = []
    for block in blocks:
        if block.kind == "title":
            out.append(Block("title", pdf_safe(block.text)))
        elif block.kind == "heading":
            out.append(Block("heading", pdf_safe(block.text)))
        elif block.kind == "bullet":
            out.append(Block("text", pdf_safe(f"\u2022 {block.text}")))
        else:
            out += [Block("text", pdf_safe(line)) for line in plain_lines(block)]
    return out


def pdf_safe(text: str) -> str:
    """The text as the PDF's WinAnsi fonts can show it: unknown characters decomposed or '?'."""
    out = []
    for char in text:
        try:
            char.encode("cp1252")
            out.append(char)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", char).encode("cp1252", "ignore").decode("cp1252")
            out.append(base or "?")
    return "".join(out)


def fits_pdf_page(blocks: Sequence[Block]) -> bool:
    try:
        text_pdf([list(blocks)], "")
    except ValueError:
        return False
    return True


def paginate_pdf(pages: Sequence[Sequence[MdBlock]]) -> list[list[Block]]:
    """Authored page breaks first; a page that overflows continues on the next one."""
    out: list[list[Block]] = []
    for page in pages:
        blocks = pdf_blocks(page)
        while blocks:
            count = blocks_that_fit(blocks)
            if count == 0:
                raise CorpusError(f"a paragraph is longer than a PDF page: {blocks[0].text[:60]!r}")
            out.append(blocks[:count])
            blocks = blocks[count:]
    return out


def blocks_that_fit(blocks: Sequence[Block]) -> int:
    """How many of the blocks, from the first, fit on one PDF page (a binary search)."""
    low, high, chars = 0, 0, 0
    while high < len(blocks) and chars < PDF_PAGE_MAX_CHARS:
        chars += len(blocks[high].text)
        high += 1
    while low < high:
        middle = (low + high + 1) // 2
        if fits_pdf_page(blocks[:middle]):
            low = middle
        else:
            high = middle - 1
    return low


def write_pdf(source: Source) -> Rendered:
    pages = paginate_pdf(split_pages(parse_body(source.body)))
    total = len(pages)
    with_footers = [
        [*page, Block("footer", pdf_safe(f"{source.title} \u2013 page {number} of {total}"))]
        for number, page in enumerate(pages, start=1)
    ]
    data = text_pdf(with_footers, pdf_safe(source.title))
    texts = tuple("\n".join(block.text for block in page) for page in pages)
    return Rendered(source, data, texts)


def scan_pages(source: Source) -> tuple[list[Image.Image], tuple[str, ...]]:
    pages = split_pages(parse_body(source.body))
    seed = sum(source.path.encode())
    images = []
    for number, page in enumerate(pages, start=1):
        blocks = pdf_blocks(page)
        if len(pages) > 1:
            blocks.append(Block("footer", f"{number} / {len(pages)}"))
        try:
            images.append(render_scan(blocks, A4_SIZE, A4_MARGIN, seed=seed + number))
        except ValueError:
            raise CorpusError(
                f"{source.path}: page {number} does not fit on a scanned A4 page"
            ) from None
    return images, tuple(body_text(page) for page in pages)


def write_scan_pdf(source: Source) -> Rendered:
    images, texts = scan_pages(source)
    return Rendered(source, image_pdf(images, source.title), texts)


def write_png(source: Source) -> Rendered:
    images, texts = scan_pages(source)
    if len(images) != 1:
        raise CorpusError(f"{source.path}: a PNG scan has exactly one page")
    return Rendered(source, png_bytes(images[0]), texts)


def write_tiff(source: Source) -> Rendered:
    images, texts = scan_pages(source)
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        "TIFF",
        save_all=True,
        append_images=images[1:],
        compression="tiff_deflate",
        dpi=(SCAN_DPI, SCAN_DPI),
    )
    return Rendered(source, buffer.getvalue(), texts if len(images) > 1 else ("\n".join(texts),))


WRITERS = {
    "md": write_markdown,
    "txt": write_text,
    "html": write_html,
    "docx": write_docx,
    "pdf": write_pdf,
    "scan-pdf": write_scan_pdf,
    "png": write_png,
    "tiff": write_tiff,
    "eml": write_eml,
    "csv": write_csv,
}


def document_time(source: Source) -> datetime:
    """The document's own date (front matter `date`, ISO) at noon UTC, else FIXED_TIME."""
    if "date" not in source.meta:
        return FIXED_TIME
    try:
        day = datetime.fromisoformat(source.meta["date"])
    except ValueError:
        raise CorpusError(f"{source.path}: date is not ISO 8601: {source.meta['date']!r}") from None
    return day.replace(hour=12, minute=0, second=0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# The golden questions


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def golden_questions(data_dir: Path, rendered: dict[str, Rendered]) -> list[dict[str, Any]]:
    lines = (data_dir / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line) for line in lines if line.strip()]
    seen: set[str] = set()
    for question in questions:
        if question["id"] in seen:
            raise CorpusError(f"question {question['id']}: duplicate id")
        seen.add(question["id"])
        if question.get("split") not in SPLITS:
            raise CorpusError(f"question {question['id']}: split must be one of {SPLITS}")
        if not question.get("unanswerable"):
            locate_answer(question, rendered)
            question["document_language"] = rendered[question["source"]["path"]].source.lang
    return questions


def locate_answer(question: dict[str, Any], rendered: dict[str, Rendered]) -> None:
    """Check the facts are in the source and, for a paged source, set the page they are on."""
    qid, path = question["id"], question["source"]["path"]
    document = rendered.get(path)
    if document is None:
        raise CorpusError(f"question {qid}: no document {path}")
    facts = [normalise(fact) for fact in question["facts"]]
    pages = [
        number
        for number, text in enumerate(document.pages, start=1)
        if all(fact in normalise(text) for fact in facts)
    ]
    if not pages:
        raise CorpusError(f"question {qid}: facts {question['facts']} not on one page of {path}")
    if len(document.pages) > 1 or document.source.fmt in PAGED_FORMATS:
        if len(pages) > 1:
            raise CorpusError(f"question {qid}: facts on several pages of {path}: {pages}")
        question["source"]["page"] = pages[0]


# ---------------------------------------------------------------------------------------------
# Putting it together


def all_sources(data_dir: Path = DATA_DIR) -> list[Source]:
    sources = licence_sources(data_dir) + authored_sources(data_dir) + templated_sources(data_dir)
    paths = [source.path for source in sources]
    duplicates = sorted({path for path in paths if paths.count(path) > 1})
    if duplicates:
        raise CorpusError(f"two documents would be written to {duplicates[0]}")
    return sources


def build_corpus(data_dir: Path = DATA_DIR) -> tuple[dict[str, Rendered], list[dict[str, Any]]]:
    """Every document rendered in memory, by path, and the golden questions."""
    rendered = {source.path: WRITERS[source.fmt](source) for source in all_sources(data_dir)}
    return rendered, golden_questions(data_dir, rendered)


def write_corpus(out_dir: Path, data_dir: Path = DATA_DIR) -> tuple[int, int]:
    rendered, questions = build_corpus(data_dir)
    documents = out_dir / "documents"
    if documents.exists():
        shutil.rmtree(documents)
    for path, document in rendered.items():
        target = documents / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(document.data)
        stamp = document_time(document.source).timestamp()
        os.utime(target, (stamp, stamp))
    golden = out_dir / "golden.jsonl"
    golden.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions))
    os.utime(golden, (FIXED_TIME.timestamp(), FIXED_TIME.timestamp()))
    return len(rendered), len(questions)


def corpus_command(
    program: str, description: str | None, write: Callable[[Path], tuple[int, int]]
) -> Callable[[Sequence[str] | None], int]:
    """The command line of a corpus builder: `python -m PROGRAM OUT_DIR`, one error line."""

    def run(argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(
            prog=f"python -m {program}",
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("out_dir", type=Path, help="folder for documents/ and golden.jsonl")
        args = parser.parse_args(argv)
        try:
            documents, questions = write(args.out_dir)
        except (CorpusError, OSError, KeyError, json.JSONDecodeError) as error:
            print(f"{program.rsplit('.', 1)[-1]}: error: {error}", file=sys.stderr)
            return 1
        print(f"{documents} documents and {questions} questions written to {args.out_dir}")
        return 0

    return run


main = corpus_command("ops.tools.make_eval_corpus", __doc__, write_corpus)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
