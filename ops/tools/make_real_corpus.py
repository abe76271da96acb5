"""Build the real-document evaluation corpus and its golden question set.

Unlike the generated evaluation corpus (`ops.tools.make_eval_corpus`), nobody on the team
wrote these documents: they are Debian's own texts in English, French and German, as installed
by the Debian packages `make setup` brings (doc-debian, debian-faq, debian-faq-fr, debian-faq-de,
manpages, manpages-fr, manpages-de, mount). Their licences are in ops/tools/real_corpus/README.md.

    python -m ops.tools.make_real_corpus OUT_DIR

writes OUT_DIR/documents/ (replaced if it exists) and OUT_DIR/golden.jsonl. The output is
deterministic for a given set of installed package versions.

ops/tools/real_corpus/documents.json lists the documents: where each is installed (`from`, gzip
read transparently), where it goes (`path`, without extension), its `lang`, its `format` (any
writer of the generated corpus: pdf, docx, html, md, txt, scan-pdf, png, tiff), and how its text
is read (`kind`):

    verbatim  the installed file itself (a real PDF or HTML page), copied as it is
    man       a manual page, typeset to text with groff, then written in `format`
    plain     a plain text, its paragraphs written in `format` under `title`

ops/tools/real_corpus/questions.jsonl holds the questions, written from reading the documents before
any was put to the appliance. Every answerable one names its `source` path (and so its
document's language, written out as `document_language`) and `facts` that must occur in it;
the page of a source of several pages is computed here from where its facts are (facts on
several pages become several `sources`); a one-page document is cited by its path alone.
Each has a `split` ("dev" or "test"), drawn like the generated corpus's: per stratum (question
language x document language x answerable), questions sorted by the SHA-256 of their id,
alternately dev and test.
"""

from __future__ import annotations

import gzip
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from ops.tools.make_eval_corpus import (
    EXTENSIONS,
    WRITERS,
    CorpusError,
    Rendered,
    corpus_command,
    escape_markdown,
    licence_body,
    make_source,
)
from ops.tools.make_sample_share import FIXED_TIME

DATA_DIR = Path(__file__).resolve().parent / "real_corpus"
SPLITS = ("dev", "test")
KINDS = ("verbatim", "man", "plain")
AUTHOR = "Debian"
MAN_WIDTH = 90  # characters per typeset manual line
MAN_HEADING_INDENT = 3  # section and subsection headings; body text is indented further


def read_installed(path: str) -> bytes:
    file = Path(path)
    if not file.is_file():
        raise CorpusError(f"not installed: {path} (run `make setup`)")
    data = file.read_bytes()
    return gzip.decompress(data) if file.suffix == ".gz" else data


def typeset_manual(roff: bytes, origin: str) -> str:
    """A manual page as plain text: groff without hyphenation, no overstrike or colour."""
    try:
        result = subprocess.run(
            ["groff", "-mandoc", "-Tutf8", "-k", "-rHY=0", f"-rLL={MAN_WIDTH}n", "-P-cbou"],
            input=roff, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
    except FileNotFoundError:
        raise CorpusError("groff is not installed (run `make setup`)") from None
    except subprocess.CalledProcessError as error:
        raise CorpusError(f"{origin}: groff failed: {error.stderr.decode()[:200]}") from None
    return result.stdout.decode("utf-8", errors="replace")


def manual_body(text: str) -> tuple[str, str]:
    """The title (`NAME(5)` and its one-line description) and a Markdown body of a typeset
    manual page: unindented lines are headings, indented ones paragraphs, `•` items bullets."""
    lines = [line.rstrip() for line in text.splitlines()]
    content = [line for line in lines if line.strip()]
    header, footer = content[0], content[-1]
    name = header.split()[0]
    blocks: list[str] = []
    paragraph: list[str] = []
    description = ""

    def flush() -> None:
        if paragraph:
            joined = " ".join(paragraph)
            if joined.startswith("•"):
                blocks.append("- " + joined.lstrip("• "))
            else:
                blocks.append(escape_markdown(joined))
            paragraph.clear()

    for line in lines:
        if line in (header, footer):
            continue
        stripped = line.strip()
        if not stripped:
            flush()
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= MAN_HEADING_INDENT:
            flush()
            blocks.append(f"## {stripped}")
            continue
        if stripped.startswith("•"):
            flush()
        if not description and blocks and " - " in stripped:
            description = " ".join(stripped.split(" - ", 1)[1].split())
        paragraph.append(" ".join(stripped.split()))
    flush()
    title = f"{name} \u2013 {description}" if description else name
    return title, f"# {title}\n\n" + "\n\n".join(blocks) + "\n"


def verbatim_pages(data: bytes, fmt: str) -> tuple[str, ...]:
    """The text of each page of a copied file, as far as the corpus needs it to place facts."""
    if fmt == "pdf":
        return tuple(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)
    if fmt == "html":
        text = re.sub(
            r"<(script|style)\b.*?</\1>", " ", data.decode("utf-8", "replace"), flags=re.S
        )
        return (html.unescape(re.sub(r"<[^>]+>", " ", text)),)
    return (data.decode("utf-8", "replace"),)


def render(entry: dict[str, Any]) -> Rendered:
    origin, kind, fmt = entry["from"], entry["kind"], entry["format"]
    if kind not in KINDS:
        raise CorpusError(f"{entry['path']}: kind must be one of {KINDS}, not {kind!r}")
    if fmt not in EXTENSIONS:
        raise CorpusError(f"{entry['path']}: unknown format {fmt!r}")
    data = read_installed(origin)
    meta = {"lang": entry["lang"], "format": fmt, "author": AUTHOR}
    if kind == "verbatim":
        source = make_source(entry["path"], meta, "", origin)
        return Rendered(source, data, verbatim_pages(data, fmt))
    if kind == "man":
        title, body = manual_body(typeset_manual(data, origin))
    else:
        title = entry["title"]
        body = f"# {title}\n\n" + licence_body(data.decode("utf-8", "replace"))
    return WRITERS[fmt](make_source(entry["path"], meta, body, origin))


def compact(text: str) -> str:
    """Text compared for facts: case folded, without any whitespace (a PDF's extracted text
    may lose its word spaces) and with typographic hyphens and quotes made plain."""
    text = text.replace("\u2010", "-").replace("\u2011", "-").replace("\u2019", "'")
    return "".join(text.casefold().split())


def place_answer(question: dict[str, Any], rendered: dict[str, Rendered]) -> None:
    """Check each source holds the question's facts and evidence, and give a paged source the
    page (or pages) they are on. `evidence` (on the question or on one of its `sources`) is text
    that places the answer without being asked of the answer; it is not written out."""
    qid = question["id"]
    wanted = question.pop("sources", None) or [question.pop("source")]
    evidence = question.pop("evidence", [])
    placed: list[dict[str, Any]] = []
    for source in wanted:
        path = source["path"]
        document = rendered.get(path)
        if document is None:
            raise CorpusError(f"question {qid}: no document {path}")
        needles = [*source.get("evidence", evidence), *question.get("facts", [])]
        if not needles:
            raise CorpusError(f"question {qid}: give `facts` or `evidence` to place the answer")
        pages = [
            number
            for number, text in enumerate(document.pages, start=1)
            if all(compact(needle) in compact(text) for needle in needles)
        ]
        if not pages:
            raise CorpusError(f"question {qid}: {needles} not on one page of {path}")
        if len(document.pages) > 1:
            placed += [{"path": path, "page": page} for page in pages]
        else:
            placed.append({"path": path})
    question["document_language"] = rendered[wanted[0]["path"]].source.lang
    if len(placed) == 1:
        question["source"] = placed[0]
    else:
        question["sources"] = placed


def golden_questions(data_dir: Path, rendered: dict[str, Rendered]) -> list[dict[str, Any]]:
    lines = (data_dir / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line) for line in lines if line.strip()]
    seen: set[str] = set()
    for question in questions:
        qid = question["id"]
        if qid in seen:
            raise CorpusError(f"question {qid}: duplicate id")
        seen.add(qid)
        if question.get("split") not in SPLITS:
            raise CorpusError(f"question {qid}: split must be one of {SPLITS}")
        if not question.get("unanswerable"):
            place_answer(question, rendered)
    return questions


def build_corpus(data_dir: Path = DATA_DIR) -> tuple[dict[str, Rendered], list[dict[str, Any]]]:
    entries = json.loads((data_dir / "documents.json").read_text(encoding="utf-8"))
    rendered: dict[str, Rendered] = {}
    for entry in entries:
        document = render(entry)
        if document.source.path in rendered:
            raise CorpusError(f"two documents would be written to {document.source.path}")
        rendered[document.source.path] = document
    return rendered, golden_questions(data_dir, rendered)


def write_corpus(out_dir: Path, data_dir: Path = DATA_DIR) -> tuple[int, int]:
    rendered, questions = build_corpus(data_dir)
    documents = out_dir / "documents"
    if documents.exists():
        shutil.rmtree(documents)
    stamp = FIXED_TIME.timestamp()
    for path, document in rendered.items():
        target = documents / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(document.data)
        os.utime(target, (stamp, stamp))
    golden = out_dir / "golden.jsonl"
    golden.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions))
    os.utime(golden, (stamp, stamp))
    return len(rendered), len(questions)


main = corpus_command("ops.tools.make_real_corpus", __doc__, write_corpus)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
