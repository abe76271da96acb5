"""Real parsers on files of each office and mail format, written at test time.

PPTX, XLSX and Outlook MSG files are written with python-pptx, openpyxl and
aspose-email-foss; ODT, RTF and EPUB by pandoc from Markdown; EML by Python's `email`
package. Nothing here can write a legacy Word .doc, so `fixtures/records-retention.doc` is a
real one, made once with LibreOffice (`soffice --headless --convert-to doc`) from an ODT that
pandoc wrote from Markdown; the parser itself reads it with antiword.
"""

from __future__ import annotations

import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest
from openpyxl import Workbook
from pptx import Presentation
from pptx.util import Inches

from ingest.chunker import passages
from ingest.document import ParsedDocument
from ingest.email_attachments import attachments
from ingest.errors import ParseError
from ingest.parsers import parse
from settings import OcrSettings
from tests.conftest import SAMPLE_SHARE

OCR = OcrSettings()
FIXTURES = Path(__file__).parent / "fixtures"
PDF = SAMPLE_SHARE / "finance" / "procurement-guidelines.pdf"

ARCHIVE_MARKDOWN = """# Archive rules

Paper files are kept for ten years.

## Disposal

Shredding is done by a certified company.
"""


def pairs(parsed: ParsedDocument) -> list[tuple[str, str, int | None]]:
    return [(b.kind, b.text, b.page) for b in parsed.blocks]


def texts(parsed: ParsedDocument) -> list[str]:
    return [b.text for b in parsed.blocks]


def write_deck(path: Path) -> Path:
    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Fleet renewal"
    first.placeholders[1].text = "The fleet renewal starts in April 2026."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Budget"
    table = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, row in enumerate(
        [["Item", "Cost"], ["Vans", "EUR 300,000"], ["Chargers", "EUR 45,000"]]
    ):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    third = deck.slides.add_slide(deck.slide_layouts[1])
    third.shapes.title.text = "Next steps"
    third.placeholders[1].text = "Each depot installs four chargers by June."
    third.notes_slide.notes_text_frame.text = "The federal grant covers half of the chargers."
    deck.save(str(path))
    return path


def write_workbook(path: Path, staff_rows: int = 2) -> Path:
    book = Workbook()
    staff = book.active
    assert staff is not None
    staff.title = "Staff"
    staff.append(["Name", "Department", "Phone"])
    staff.append(["Anna Weber", "Finance", "4411"])
    staff.append(["Jonas Klein", "IT", "4412"])
    for n in range(staff_rows - 2):
        staff.append([f"Person {n}", "Operations", str(5000 + n)])
    rooms = book.create_sheet("Rooms")
    rooms.append(["Room", "Seats", "Floor"])
    rooms.append(["Harbour", 12, "2"])
    rooms.append(["Summit", 30, None])
    book.save(str(path))
    return path


def pandoc(markdown: str, target: Path) -> Path:
    source = target.with_suffix(".md")
    source.write_text(markdown)
    subprocess.run(["pandoc", str(source), "-s", "-o", str(target)], check=True, timeout=60)
    return target


def test_pptx_slides_are_pages_with_titles_table_rows_and_then_speaker_notes(
    tmp_path: Path,
) -> None:
    parsed = parse(write_deck(tmp_path / "fleet.pptx"), OCR)
    assert parsed.parser == "pptx"
    assert parsed.title("x") == "Fleet renewal"
    assert pairs(parsed) == [
        ("heading", "Fleet renewal", 1),
        ("text", "The fleet renewal starts in April 2026.", 1),
        ("heading", "Budget", 2),
        ("table", "Item: Vans; Cost: EUR 300,000", 2),
        ("table", "Item: Chargers; Cost: EUR 45,000", 2),
        ("heading", "Next steps", 3),
        ("text", "Each depot installs four chargers by June.", 3),
        ("text", "The federal grant covers half of the chargers.", 3),
    ]
    assert parsed.pages == 3


def test_xlsx_sheets_are_pages_and_each_row_carries_its_column_names(tmp_path: Path) -> None:
    parsed = parse(write_workbook(tmp_path / "directory.xlsx"), OCR)
    assert parsed.parser == "xlsx"
    assert pairs(parsed) == [
        ("table", "Name: Anna Weber; Department: Finance; Phone: 4411", 1),
        ("table", "Name: Jonas Klein; Department: IT; Phone: 4412", 1),
        ("table", "Room: Harbour; Seats: 12; Floor: 2", 2),
        ("table", "Room: Summit; Seats: 30", 2),
    ]
    assert parsed.pages == 2


def test_every_chunk_of_a_long_sheet_still_names_its_columns(tmp_path: Path) -> None:
    parsed = parse(write_workbook(tmp_path / "big.xlsx", staff_rows=400), OCR)
    chunks = [p for p in passages(parsed, "big", max_chars=500) if p.page == 1]
    assert len(chunks) > 20
    for chunk in chunks:
        for line in chunk.text.split("\n"):
            assert line.startswith("Name: ") and "; Department: " in line and "; Phone: " in line


def test_csv_rows_carry_their_headers_with_the_delimiter_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "suppliers.csv"
    path.write_text(
        'Supplier;City;Contract ends\nNordlicht GmbH;Kiel;2027-06-30\n"Weber; Sons";Bremen;\n',
        encoding="utf-8",
    )
    parsed = parse(path, OCR)
    assert parsed.parser == "csv"
    assert pairs(parsed) == [
        ("table", "Supplier: Nordlicht GmbH; City: Kiel; Contract ends: 2027-06-30", None),
        ("table", "Supplier: Weber; Sons; City: Bremen", None),
    ]


def test_a_windows_1252_csv_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "approvers.csv"
    path.write_bytes("Name,Role\r\nMüller,Approver for Straße projects\r\n".encode("cp1252"))
    assert texts(parse(path, OCR)) == ["Name: Müller; Role: Approver for Straße projects"]


@pytest.mark.parametrize("suffix", ["odt", "rtf", "epub"])
def test_pandoc_formats_keep_headings_and_sentences(tmp_path: Path, suffix: str) -> None:
    parsed = parse(pandoc(ARCHIVE_MARKDOWN, tmp_path / f"archive.{suffix}"), OCR)
    assert parsed.parser == suffix
    blocks = [(b.kind, b.text) for b in parsed.blocks]
    assert ("heading", "Disposal") in blocks
    assert ("text", "Paper files are kept for ten years.") in blocks
    assert ("text", "Shredding is done by a certified company.") in blocks


def test_a_legacy_word_doc_is_read_by_antiword() -> None:
    parsed = parse(FIXTURES / "records-retention.doc", OCR)
    assert parsed.parser == "doc"
    assert texts(parsed) == [
        "Records retention",
        "Signed contracts are kept for ten years after they end.",
        "Invoices and receipts are kept for eight years from the end of the calendar year in "
        "which they were issued.",
        "Personnel files are destroyed two years after an employee leaves, unless a legal "
        "dispute is pending.",
        "Frau Müller in the legal office decides on any early destruction of records.",
        "Paper originals that have been scanned into the archive may be shredded after a "
        "quality check of the scan.",
    ]


def test_a_doc_that_is_really_rtf_is_read_as_rtf(tmp_path: Path) -> None:
    rtf = pandoc(ARCHIVE_MARKDOWN, tmp_path / "archive.rtf")
    doc = rtf.rename(tmp_path / "archive.doc")
    parsed = parse(doc, OCR)
    assert parsed.parser == "rtf"
    assert "Shredding is done by a certified company." in texts(parsed)


def test_a_doc_antiword_cannot_read_raises_a_one_line_parse_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.doc"
    broken.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)
    with pytest.raises(ParseError) as caught:
        parse(broken, OCR)
    assert caught.value.path == str(broken)
    assert "antiword" in caught.value.reason and "\n" not in caught.value.reason


def write_eml(path: Path) -> Path:
    message = EmailMessage()
    message["Subject"] = "Minutes of the works council"
    message["From"] = "Anna Weber <anna.weber@example.org>"
    message["To"] = "Jonas Klein <jonas.klein@example.org>"
    message["Date"] = "Tue, 03 Mar 2026 10:30:00 +0100"
    message.set_content(
        "The works council approved the new shift plan.\n\nIt takes effect on 1 April 2026.\n"
    )
    message.add_attachment(
        b"Vote: 7 in favour, 2 against.\n", maintype="text", subtype="plain", filename="vote.txt"
    )
    message.add_attachment(
        PDF.read_bytes(), maintype="application", subtype="pdf", filename=PDF.name
    )
    path.write_bytes(message.as_bytes())
    return path


def test_an_eml_body_is_parsed_and_its_attachments_come_back_with_their_bytes(
    tmp_path: Path,
) -> None:
    path = write_eml(tmp_path / "minutes.eml")
    parsed = parse(path, OCR)
    assert parsed.parser == "eml"
    assert parsed.title("x") == "Minutes of the works council"
    assert "The works council approved the new shift plan." in texts(parsed)
    assert "It takes effect on 1 April 2026." in texts(parsed)
    assert "From: Anna Weber <anna.weber@example.org>" in parsed.blocks[1].text
    assert not any("Vote" in text for text in texts(parsed))
    assert attachments(path) == [
        ("vote.txt", b"Vote: 7 in favour, 2 against.\n"),
        (PDF.name, PDF.read_bytes()),
    ]
    vote, guidelines = parsed.attachments
    assert (vote.name, texts(vote.document)) == ("vote.txt", ["Vote: 7 in favour, 2 against."])
    assert guidelines.name == PDF.name
    assert guidelines.document.parser == "pdf" and guidelines.document.pages == 2
    assert parsed.total_pages() == parsed.pages + 1 + 2
    assert parsed.notes == []


def test_attachments_that_cannot_be_read_are_noted_and_the_message_is_kept(
    tmp_path: Path,
) -> None:
    innermost = EmailMessage()
    innermost["Subject"] = "Level three"
    innermost.set_content("Deepest text.\n")
    nested = innermost
    for level in (2, 1):
        outer = EmailMessage()
        outer["Subject"] = f"Level {level}"
        outer.set_content(f"Text of level {level}.\n")
        outer.add_attachment(nested)
        nested = outer
    message = EmailMessage()
    message["Subject"] = "Mixed bag"
    message.set_content("Three files are attached.\n")
    message.add_attachment(b"MZ\x90\x00", "application", "octet-stream", filename="setup.exe")
    message.add_attachment(b"%PDF-1.7 truncated", "application", "pdf", filename="broken.pdf")
    message.add_attachment(nested)
    path = tmp_path / "bag.eml"
    path.write_bytes(message.as_bytes())

    parsed = parse(path, OCR)
    assert "Three files are attached." in texts(parsed)
    assert [a.name for a in parsed.attachments] == ["Level 1.eml"]
    level_one = parsed.attachments[0].document
    assert "Text of level 1." in texts(level_one)
    assert [a.name for a in level_one.attachments] == ["Level 2.eml"]
    assert level_one.attachments[0].document.attachments == []  # three deep: no further
    skipped, broken, too_deep = parsed.notes
    assert skipped == "attachment 'setup.exe' skipped: unsupported file type .exe"
    assert broken.startswith("attachment 'broken.pdf' failed: ")
    assert too_deep == (
        "in attachment 'Level 1.eml': in attachment 'Level 2.eml': "
        "attachment 'Level three.eml' skipped: messages nested more than 3 deep"
    )
    assert all("\n" not in note for note in parsed.notes)


def test_an_html_eml_keeps_inline_images_in_the_body_and_returns_forwarded_mail(
    tmp_path: Path,
) -> None:
    forwarded = EmailMessage()
    forwarded["Subject"] = "Original request"
    forwarded.set_content("Please order twelve chairs.\n")
    message = EmailMessage()
    message["Subject"] = "Chairs"
    message.set_content(
        '<html><body><p>The chairs arrive on Friday.</p><img src="cid:logo"></body></html>',
        "html",
    )
    message.add_related(b"\x89PNG\r\n\x1a\n", "image", "png", cid="<logo>", filename="logo.png")
    message.add_attachment(b"order", "text", "plain", filename="..\\..\\etc\\order.txt")
    message.add_attachment(forwarded)
    path = tmp_path / "chairs.eml"
    path.write_bytes(message.as_bytes())

    assert "The chairs arrive on Friday." in texts(parse(path, OCR))
    found = attachments(path)
    assert [name for name, _ in found] == ["order.txt", "Original request.eml"]
    assert found[0][1] == b"order"
    inner = tmp_path / found[1][0]
    inner.write_bytes(found[1][1])
    assert "Please order twelve chairs." in texts(parse(inner, OCR))


def test_an_outlook_msg_body_is_parsed_and_its_attachments_come_back(tmp_path: Path) -> None:
    msg = pytest.importorskip(
        "aspose.email_foss.msg", reason="aspose-email-foss (dev) writes the test's .msg file"
    )
    message = msg.MapiMessage.create(
        "Quarterly audit",
        "The audit starts on 3 March 2026.\r\n\r\nBring the signed ledger to room 4.\r\n",
    )
    message.set_property(msg.PropertyId.SENDER_NAME, "Anna Weber")
    message.set_property(msg.PropertyId.SENDER_EMAIL_ADDRESS, "anna.weber@example.org")
    message.add_recipient("jonas.klein@example.org", display_name="Jonas Klein")
    message.add_attachment("checklist.txt", b"Ledger, receipts, bank statements.\n")
    message.add_attachment(PDF.name, PDF.read_bytes(), mime_type="application/pdf")
    path = tmp_path / "audit.msg"
    message.save(str(path))

    parsed = parse(path, OCR)
    assert parsed.parser == "msg"
    assert parsed.title("x") == "Quarterly audit"
    assert "The audit starts on 3 March 2026." in texts(parsed)
    assert "Bring the signed ledger to room 4." in texts(parsed)
    assert "To: Jonas Klein <jonas.klein@example.org>" in parsed.blocks[1].text
    assert not any("receipts" in text for text in texts(parsed))
    assert attachments(path) == [
        ("checklist.txt", b"Ledger, receipts, bank statements.\n"),
        (PDF.name, PDF.read_bytes()),
    ]
    assert [a.name for a in parsed.attachments] == ["checklist.txt", PDF.name]
    assert texts(parsed.attachments[0].document) == ["Ledger, receipts, bank statements."]


def test_attachments_of_a_file_that_is_not_mail_raise(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("no mail")
    with pytest.raises(ParseError, match="not an e-mail"):
        attachments(path)
