"""A generated share like the ones operators point the appliance at: nested folders, every
common format, copies, and the files and links that break ingestion elsewhere.

`build(root)` writes it and returns what each hostile entry must end as, by its path
relative to the root: ("indexed" | "failed" | "skipped", a fragment of the reason or None).
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import zipfile
import zlib
from email.message import EmailMessage
from pathlib import Path

from docx import Document

from ops.tools.pdf_writer import one_page_text_pdf
from tests.conftest import SAMPLE_SHARE

Fate = tuple[str, str | None]

TOPICS = ["harbour", "crane", "berth", "tariff", "pilotage", "dredging", "mooring", "ferry"]


def _sentences(rng: random.Random, n: int) -> list[str]:
    return [
        f"Record {n}.{i}: the {rng.choice(TOPICS)} {rng.choice(TOPICS)} budget is "
        f"EUR {rng.randint(1000, 99999):,}."
        for i in range(3)
    ]


KINDS = ["md", "txt", "html", "csv", "docx", "pdf"]


def ordinary_path(n: int) -> str:
    """Where the n-th ordinary file is, relative to the root; its kind is KINDS[n % 6]."""
    return f"dept-{n % 5}/unit-{n % 3}/year-{2010 + n % 4}/file-{n:03d}.{KINDS[n % len(KINDS)]}"


def _ordinary_files(root: Path, count: int, rng: random.Random) -> None:
    for n in range(count):
        path = root / ordinary_path(n)
        path.parent.mkdir(parents=True, exist_ok=True)
        kind = KINDS[n % len(KINDS)]
        lines = _sentences(rng, n)
        if kind == "md":
            path.write_text(f"# File {n}\n\n" + "\n\n".join(lines) + "\n")
        elif kind == "txt":
            path.write_text("\n".join(lines) + "\n")
        elif kind == "html":
            path.write_text(f"<h1>File {n}</h1>" + "".join(f"<p>{line}</p>" for line in lines))
        elif kind == "csv":
            path.write_text("item,topic\n" + "".join(f"{i},{line}\n" for i, line in
                                                      enumerate(lines)))  # fmt: skip
        elif kind == "docx":
            document = Document()
            document.add_heading(f"File {n}", 1)
            for line in lines:
                document.add_paragraph(line)
            document.save(str(path))
        else:
            path.write_bytes(one_page_text_pdf([f"File {n}", *lines]))


def _zip_bomb_docx(path: Path) -> None:
    """A real DOCX whose document.xml is swapped for one that inflates from about 1.5 MB to
    1.5 GB."""
    source_docx = SAMPLE_SHARE / "policies" / "remote-work.docx"
    with zipfile.ZipFile(source_docx) as source, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:  # fmt: skip
        for item in source.infolist():
            if item.filename != "word/document.xml":
                out.writestr(item, source.read(item))
        with out.open("word/document.xml", "w", force_zip64=True) as xml:
            xml.write(b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats'
                      b'.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>')  # fmt: skip
            block = b"A" * (1 << 20)
            for _ in range(1500):
                xml.write(block)
            xml.write(b"</w:t></w:r></w:p></w:body></w:document>")


def _pixel_bomb_png(path: Path, side: int = 20_000) -> None:
    """A 400-megapixel grey PNG of a few hundred kilobytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte, then the pixels
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))  # fmt: skip


def _encrypted_pdf(path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(SAMPLE_SHARE / "finance" / "procurement-guidelines.pdf").pages:
        writer.add_page(page)
    writer.encrypt(user_password="s3cret", algorithm="AES-256")
    with path.open("wb") as handle:
        writer.write(handle)


def _mail_with_attachments(path: Path) -> None:
    message = EmailMessage()
    message["Subject"] = "Dredging permit"
    message.set_content("The dredging permit for berth 4 is attached.\n")
    message.add_attachment(
        one_page_text_pdf(["Dredging permit", "Berth 4 may be dredged to 14 metres."]),
        "application", "pdf", filename="permit.pdf",
    )  # fmt: skip
    message.add_attachment(b"%PDF-1.7 cut short", "application", "pdf", filename="broken.pdf")
    path.write_bytes(message.as_bytes())


def build(root: Path, ordinary: int = 180, seed: int = 3) -> dict[str, Fate]:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    _ordinary_files(root, ordinary, rng)
    hostile = root / "hostile"
    hostile.mkdir()
    fates: dict[str, Fate] = {}

    def expect(relative: str, status: str, reason: str | None = None) -> Path:
        fates[relative] = (status, reason)
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        return root / relative

    # Copies of one report in three places.
    for place in ("dept-0", "dept-1/unit-1", "hostile"):
        shutil.copy(SAMPLE_SHARE / "policies" / "remote-work.docx",
                    expect(f"{place}/remote-work-copy.docx", "indexed"))  # fmt: skip
    # Scans: OCR.
    shutil.copy(SAMPLE_SHARE / "finance" / "harbour-renovation-memo.png",
                expect("scans/memo.png", "indexed"))  # fmt: skip
    # Broken, empty, encrypted, bombs.
    expect("hostile/empty.txt", "failed", "no text").write_bytes(b"")
    expect("hostile/empty.pdf", "failed", None).write_bytes(b"")
    source_pdf = (SAMPLE_SHARE / "finance" / "procurement-guidelines.pdf").read_bytes()
    expect("hostile/truncated.pdf", "failed", None).write_bytes(source_pdf[:400])
    docx = (SAMPLE_SHARE / "policies" / "remote-work.docx").read_bytes()
    expect("hostile/truncated.docx", "failed", None).write_bytes(docx[: len(docx) // 2])
    expect("hostile/garbage.xlsx", "failed", None).write_bytes(rng.randbytes(4096))
    _encrypted_pdf(expect("hostile/encrypted.pdf", "failed", "password"))
    _zip_bomb_docx(expect("hostile/zip-bomb.docx", "failed", "stopped"))
    _pixel_bomb_png(expect("hostile/pixel-bomb.png", "failed", "megapixels"))
    # Encodings.
    expect("hostile/latin-1.txt", "indexed").write_bytes(
        "Protokoll: Die Gebühr für den Liegeplatz beträgt 420 Euro.\n".encode("latin-1")
    )
    expect("hostile/utf-16.txt", "indexed").write_bytes(
        "Le tarif du pilotage est de 310 euros.\n".encode("utf-16")
    )
    # Names.
    odd_names = ["line\nbreak.md", "tab\tand space .md", "caf\u00e9 nfc.md", "cafe\u0301 nfd.md",
                 "right-to-left \u202egpj.md", "emoji \U0001f4c4.md", "x" * 240 + ".md",
                 "-starts-with-dash.md", "quote's \"double\".md"]  # fmt: skip
    for number, name in enumerate(odd_names):
        expect(f"hostile/names/{name}", "indexed").parent.mkdir(exist_ok=True)
        (root / "hostile" / "names" / name).write_text(
            f"# Odd name {number}\n\nMooring {number}.\n"
        )
    not_utf8 = os.fsencode(root / "hostile" / "names") + b"/caf\xe9 latin-1 name.md"
    with open(not_utf8, "wb") as handle:
        handle.write(b"# Latin-1 name\n\nFerry timetable.\n")
    # Unsupported types.
    expect("hostile/setup.exe", "skipped", "unsupported").write_bytes(b"MZ\x90\x00")
    expect("hostile/archive.zip", "skipped", "unsupported").write_bytes(b"PK\x05\x06" + bytes(18))
    expect("hostile/README", "skipped", "unsupported").write_text("no extension\n")
    # Links and special files.
    outside = root.parent / f"{root.name}-outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nNot part of the share.\n")
    expect("hostile/escape", "skipped", "outside the ingest root").symlink_to(outside)
    expect("hostile/escape.md", "skipped", "outside the ingest root").symlink_to(
        outside / "secret.md"
    )
    expect("hostile/loop", "skipped", "crawled where it lives").symlink_to(root)
    expect("hostile/dangling.md", "skipped", None).symlink_to(root / "nowhere.md")
    os.mkfifo(expect("hostile/pipe.txt", "skipped", None))
    # A very deep tree.
    deep = hostile / "deep"
    for _ in range(60):
        deep = deep / "d"
    deep.mkdir(parents=True)
    relative = str((deep / "bottom.md").relative_to(root))
    expect(relative, "indexed").write_text("# Bottom\n\nThe deepest berth is berth 60.\n")
    # Mail whose attachments are read apart; one of them is broken.
    _mail_with_attachments(expect("mail/dredging.eml", "indexed"))
    return fates


def entries(root: Path) -> list[bytes]:
    """Every file, link and special file under the root, as bytes (some names aren't UTF-8)."""
    found = []
    for folder, folders, files in os.walk(os.fsencode(root)):
        found += [os.path.join(folder, name) for name in files]
        found += [os.path.join(folder, name) for name in folders
                  if os.path.islink(os.path.join(folder, name))]  # fmt: skip
    return found
