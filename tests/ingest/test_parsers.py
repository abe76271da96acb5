"""Real parsers on the sample share: unstructured for documents, Tesseract for scans."""

from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from ingest.errors import ParseError
from ingest.parsers import parse
from ops.tools.pdf_writer import one_page_text_pdf
from settings import OcrSettings
from tests.conftest import SAMPLE_SHARE

OCR = OcrSettings()


def text_of(path: Path) -> str:
    return "\n".join(block.text for block in parse(path, OCR).blocks)


def test_markdown_keeps_headings_and_text() -> None:
    parsed = parse(SAMPLE_SHARE / "policies" / "travel-and-expenses.md", OCR)
    assert parsed.title("x") == "Travel and Expenses Policy"
    assert ("heading", "Per-diem allowances") in [(b.kind, b.text) for b in parsed.blocks]
    assert "The daily meal allowance for travel within Germany is EUR 28." in text_of(
        SAMPLE_SHARE / "policies" / "travel-and-expenses.md"
    )


def test_docx_is_read_with_its_headings() -> None:
    parsed = parse(SAMPLE_SHARE / "policies" / "remote-work.docx", OCR)
    assert parsed.title("x") == "Remote Work Policy"
    assert any("up to 3 days per week" in b.text for b in parsed.blocks)


def test_a_text_pdf_uses_its_text_layer_with_page_numbers() -> None:
    parsed = parse(SAMPLE_SHARE / "finance" / "procurement-guidelines.pdf", OCR)
    assert parsed.pages == 2
    assert parsed.ocr_pages == []
    assert parsed.parser == "pdf"
    page = {n: " ".join(b.text for b in parsed.blocks if b.page == n) for n in (1, 2)}
    assert "Purchases above EUR 25,000 require three written quotes." in page[1]
    assert "Contracts above EUR 250,000 must be approved by the Executive Board." in page[2]


def test_an_image_only_pdf_is_ocrd_page_by_page() -> None:
    parsed = parse(SAMPLE_SHARE / "finance" / "board-minutes-2026-03.pdf", OCR)
    assert parsed.pages == 2
    assert parsed.ocr_pages == [1, 2]
    page_two = " ".join(b.text for b in parsed.blocks if b.page == 2)
    assert "The approved budget of the IT Modernisation Programme is EUR 1,980,000." in page_two


def test_a_scanned_image_is_ocrd() -> None:
    text = text_of(SAMPLE_SHARE / "finance" / "harbour-renovation-memo.png")
    assert (
        "approved a total budget of EUR 4,750,000 for the Harbour Renovation Project"
        in " ".join(text.split())
    )


def test_html_and_plain_text_are_parsed(tmp_path: Path) -> None:
    html = tmp_path / "notice.html"
    html.write_text(
        "<html><body><h1>Parking</h1><p>Permits cost EUR 40 per month.</p></body></html>"
    )
    txt = tmp_path / "notes.txt"
    txt.write_text("The canteen opens at 11:30.\n\nIt closes at 14:00.\n")
    assert "Permits cost EUR 40 per month." in text_of(html)
    assert "The canteen opens at 11:30." in text_of(txt)


def test_a_corrupt_pdf_raises_a_one_line_parse_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage")
    with pytest.raises(ParseError) as caught:
        parse(broken, OCR)
    assert caught.value.path == str(broken)
    assert "\n" not in caught.value.reason and caught.value.reason


def test_an_unsupported_type_raises(tmp_path: Path) -> None:
    odd = tmp_path / "archive.xyz"
    odd.write_bytes(b"\0\1")
    with pytest.raises(ParseError, match="unsupported file type"):
        parse(odd, OCR)


def test_a_scan_under_a_garbled_text_layer_is_ocrd(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(
        one_page_text_pdf(
            ["Xkcd zqwrt bnmpq vvx trkz pqlm wxcv bnmz qqrt zzkp " * 2], invisible=True
        )
    )
    writer = PdfWriter()
    scan = writer.add_page(
        PdfReader(SAMPLE_SHARE / "finance" / "board-minutes-2026-03.pdf").pages[1]
    )
    scan.merge_page(PdfReader(garbage).pages[0])
    layered = tmp_path / "layered.pdf"
    writer.write(layered)
    assert "Xkcd" in PdfReader(layered).pages[0].extract_text()
    parsed = parse(layered, OCR)
    assert parsed.ocr_pages == [1]
    text = " ".join(b.text for b in parsed.blocks)
    assert "EUR 1,980,000" in text and "Xkcd" not in text


def test_a_password_protected_pdf_fails_with_a_one_line_reason(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=SAMPLE_SHARE / "finance" / "procurement-guidelines.pdf")
    writer.encrypt(user_password="s3cret", algorithm="AES-256")
    locked = tmp_path / "locked.pdf"
    writer.write(locked)
    with pytest.raises(ParseError) as caught:
        parse(locked, OCR)
    assert caught.value.reason == "the PDF is password-protected; index an unprotected copy"


def test_a_pdf_restricted_only_against_editing_is_read(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=SAMPLE_SHARE / "finance" / "procurement-guidelines.pdf")
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    restricted = tmp_path / "restricted.pdf"
    writer.write(restricted)
    assert "three written quotes" in " ".join(b.text for b in parse(restricted, OCR).blocks)


def test_every_page_of_a_multi_page_tiff_is_ocrd(tmp_path: Path) -> None:
    from PIL import Image

    memo = Image.open(SAMPLE_SHARE / "finance" / "harbour-renovation-memo.png").convert("L")
    tiff = tmp_path / "fax.tiff"
    memo.save(tiff, save_all=True, append_images=[memo.rotate(0)], compression="tiff_lzw")
    parsed = parse(tiff, OCR)
    assert parsed.pages == 2 and parsed.ocr_pages == [1, 2]
    for page in (1, 2):
        text = " ".join(b.text for b in parsed.blocks if b.page == page)
        assert "EUR 4,750,000" in text


def test_the_title_in_a_pdfs_and_an_html_pages_metadata_is_kept(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=SAMPLE_SHARE / "finance" / "procurement-guidelines.pdf")
    writer.add_metadata({"/Title": "Procurement Guidelines of the Harbour Authority"})
    titled = tmp_path / "titled.pdf"
    writer.write(titled)
    assert parse(titled, OCR).metadata_title == "Procurement Guidelines of the Harbour Authority"
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Rules &amp; Fees\n 2025</title></head><body><p>Text</p></body></html>"
    )
    parsed = parse(page, OCR)
    assert parsed.metadata_title == "Rules & Fees 2025"
    assert "Rules" not in " ".join(b.text for b in parsed.blocks)
