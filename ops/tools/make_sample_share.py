"""Generate the sample file share of the fictional Nordhafen Port Authority.

Writes six small documents under OUT_DIR (default: ops/sample-share next to this script):

    policies/travel-and-expenses.md      Markdown
    policies/information-security.md     Markdown
    policies/remote-work.docx            Word document
    finance/procurement-guidelines.pdf   two-page PDF with a text layer (Helvetica)
    finance/harbour-renovation-memo.png  scanned memo, needs OCR
    finance/board-minutes-2026-03.pdf    two scanned pages, image-only PDF, needs OCR

The outputs are committed to the repository, so the appliance needs neither the fonts nor
this script at run time; rerun it only to change the share. The output is deterministic
(fixed timestamps, seeded noise), so rerunning it leaves the committed files unchanged.

Usage: python ops/tools/make_sample_share.py [OUT_DIR]
"""

from __future__ import annotations

import argparse
import io
import random
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from docx import Document
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ORGANISATION = "Nordhafen Port Authority"
FIXED_TIME = datetime(2026, 3, 31, 12, 0, 0, tzinfo=UTC)

FONT_DIR = Path("/usr/share/fonts/truetype/liberation")
SERIF = FONT_DIR / "LiberationSerif-Regular.ttf"
SERIF_BOLD = FONT_DIR / "LiberationSerif-Bold.ttf"
# Liberation Sans has the same advance widths as Helvetica, so it measures the PDF text.
SANS = FONT_DIR / "LiberationSans-Regular.ttf"
SANS_BOLD = FONT_DIR / "LiberationSans-Bold.ttf"

SCAN_DPI = 200
PAPER = 238
INK = 18
SCAN_BLUR = 0.8
SPECKLE_AREA = 2000
JPEG_QUALITY = 35

TRAVEL_AND_EXPENSES_MD = """\
# Travel and Expenses Policy

This policy applies to all employees of the Nordhafen Port Authority who travel on \
official business. It is owned by the Finance Directorate and takes effect on 1 May 2026. \
Travel should be undertaken only where the purpose cannot reasonably be achieved by a \
video conference.

## Booking

- All business travel must be approved in advance by the line manager using the travel \
request form on the intranet.
- Trips are booked through the Authority's contracted travel agency. Bookings made \
privately are reimbursed only if they were cheaper than the agency's offer.
- Rail travel in second class is mandatory for journeys of up to 500 km. Flights are \
booked in economy class.
- Hotel costs are reimbursed up to EUR 130 per night within Germany, breakfast included.

## Per-diem allowances

The daily meal allowance for travel within Germany is EUR 28. For trips lasting more \
than 8 hours but less than 24 hours, including the days of departure and return, the \
allowance is EUR 14.

For travel abroad, the country rates published by the Federal Ministry of Finance apply. \
Where meals are provided free of charge, the full daily allowance is reduced by 20% for \
breakfast and by 40% each for lunch and dinner.

## Reimbursement

Claims must be submitted within 30 days of the end of the trip through the expenses \
portal, together with scanned receipts for every item above EUR 10. Late claims are \
accepted only with the written approval of the Head of Finance.

Use of a private car must be approved in advance; mileage is reimbursed at EUR 0.30 per \
kilometre. Approved claims are paid with the next monthly salary.

## Non-reimbursable expenses

The Authority does not reimburse alcoholic drinks, traffic or parking fines, personal \
entertainment, upgrades to a higher travel class, or costs of accompanying persons.
"""

INFORMATION_SECURITY_MD = """\
# Information Security Policy

This policy protects the information and systems of the Nordhafen Port Authority against \
loss, misuse and unauthorised disclosure. It applies to employees, contractors and \
visitors who use the Authority's IT systems, wherever they work.

## Passwords and authentication

- Passwords must be at least 14 characters long. Passphrases made of several unrelated \
words are recommended.
- A password must not be reused across systems and must never be shared, not even with \
IT staff. Store passwords only in the Authority's approved password manager.
- Multi-factor authentication is mandatory for e-mail, the VPN and all systems reachable \
from outside the port network.

## Laptops and mobile devices

All laptops must be protected with full-disk encryption before they are handed out; \
the IT Service Centre enables and verifies it. Screens must lock automatically after \
5 minutes of inactivity. Devices must not be left unattended in vehicles or public places.

Removable storage media may be used only if they are encrypted and issued by the IT \
Service Centre. Private devices must not be connected to the internal network.

## Reporting security incidents

Any suspected security incident, such as a lost laptop, a phishing e-mail that was \
opened, or unusual system behaviour, must be reported to the Security Operations Desk \
at extension 4410 within 2 hours of discovery. Outside office hours, call the duty \
officer through the port control centre.

Do not try to investigate an incident yourself and do not delete evidence. Reporting a \
mistake promptly is never a disciplinary matter.

## Compliance

Breaches of this policy may lead to the withdrawal of access rights and to disciplinary \
action. The Chief Information Security Officer reviews this policy every year.
"""

REMOTE_WORK_TITLE = "Remote Work Policy"
REMOTE_WORK_SECTIONS: list[tuple[str, list[str]]] = [
    (
        "Purpose and scope",
        [
            "This policy sets out the conditions under which employees of the Nordhafen "
            "Port Authority may work away from their usual place of work. It applies to "
            "all employees with a permanent or fixed-term contract.",
        ],
    ),
    (
        "Eligibility",
        [
            "Employees may work remotely up to 3 days per week, subject to the agreement "
            "of their line manager. The remote days are agreed in advance and recorded in "
            "the team calendar.",
            "Roles that require a physical presence at the terminals, in the port control "
            "centre or on board vessels are excluded on the days that presence is needed.",
        ],
    ),
    (
        "Working time and availability",
        [
            "The rules on working time apply without change. Employees working remotely "
            "must be reachable by telephone and chat during the core hours from 09:00 to "
            "15:00 and record their working time in the time-recording system.",
        ],
    ),
    (
        "Equipment and costs",
        [
            "The Authority provides a laptop, a headset and access to the VPN. The "
            "home-office equipment allowance is EUR 450 per year and may be used for a "
            "desk chair, a monitor or a desk. Receipts are submitted through the expenses "
            "portal.",
        ],
    ),
    (
        "Data protection and security",
        [
            "The Information Security Policy applies in full. Confidential documents must "
            "not be printed at home, and screens must be locked whenever the workplace is "
            "left unattended.",
        ],
    ),
]


@dataclass(frozen=True)
class Block:
    kind: Literal["title", "subtitle", "heading", "text", "field", "rule", "footer"]
    text: str = ""
    label: str = ""


PROCUREMENT_PAGES: list[list[Block]] = [
    [
        Block("title", "Procurement Guidelines"),
        Block("subtitle", f"{ORGANISATION} \u2013 Finance Directorate \u2013 version 3.1"),
        Block("heading", "Purpose and scope"),
        Block(
            "text",
            "These guidelines apply to every purchase of goods, services and works made on "
            "behalf of the Nordhafen Port Authority, irrespective of the source of funding. "
            "They implement the principles of transparency, equal treatment and value for "
            "money and supplement the applicable public procurement law. Where the law sets "
            "stricter requirements, the law prevails.",
        ),
        Block("heading", "Thresholds"),
        Block(
            "text",
            "The estimated contract value, excluding VAT and including all options and "
            "renewals, determines the procedure. Splitting a requirement into smaller orders "
            "to avoid a threshold is prohibited.",
        ),
        Block(
            "text",
            "Purchases up to EUR 5,000 may be ordered directly after a price comparison.",
        ),
        Block("text", "Purchases above EUR 5,000 require two written quotes."),
        Block("text", "Purchases above EUR 25,000 require three written quotes."),
        Block(
            "text",
            "Purchases above EUR 140,000 must be awarded through an open tender published on "
            "the procurement portal.",
        ),
        Block("heading", "Documentation"),
        Block(
            "text",
            "Quotes, evaluation notes and the award decision are filed in the procurement "
            "register before the order is placed. Procurement records are kept for ten years.",
        ),
        Block("footer", "Procurement Guidelines \u2013 page 1 of 2"),
    ],
    [
        Block("heading", "Approval authority"),
        Block(
            "text",
            "Every purchase order must be approved before it is placed. The approval level "
            "depends on the total contract value over the full contract term.",
        ),
        Block("text", "Heads of unit may approve contracts up to EUR 25,000."),
        Block("text", "Directors may approve contracts up to EUR 250,000."),
        Block("text", "Contracts above EUR 250,000 must be approved by the Executive Board."),
        Block(
            "text",
            "No one may approve a purchase from which they, a relative or a close associate "
            "could benefit.",
        ),
        Block("heading", "Conflicts of interest"),
        Block(
            "text",
            "Staff involved in a procurement must declare any conflict of interest in writing "
            "to the Compliance Office before the evaluation of offers begins.",
        ),
        Block("heading", "Contact"),
        Block(
            "text",
            "Questions on these guidelines are answered by the Procurement Office at "
            "extension 4230.",
        ),
        Block("footer", "Procurement Guidelines \u2013 page 2 of 2"),
    ],
]

MEMO_PAGE: list[Block] = [
    Block("title", ORGANISATION.upper()),
    Block("subtitle", "Internal Memorandum"),
    Block("field", "Heads of Department", label="To:"),
    Block("field", "Office of the Executive Board", label="From:"),
    Block("field", "14 March 2026", label="Date:"),
    Block("field", "Harbour Renovation Project", label="Subject:"),
    Block("rule"),
    Block(
        "text",
        "The Executive Board approved a total budget of EUR 4,750,000 for the Harbour "
        "Renovation Project.",
    ),
    Block("text", "Construction works will start in September 2026."),
    Block("text", "The project lead is Dr. Ingrid Hansen."),
]

MINUTES_PAGES: list[list[Block]] = [
    [
        Block("title", ORGANISATION.upper()),
        Block("subtitle", "Minutes of the Executive Board, 24 March 2026"),
        Block("text", "Board Room 2, Harbour House, from 09:30 to 12:15."),
        Block("heading", "Attendees"),
        Block("text", "Margarethe Olsen, Chief Executive (Chair)"),
        Block("text", "Dr. Ingrid Hansen, Director of Infrastructure"),
        Block("text", "Tobias Reinholt, Chief Financial Officer"),
        Block("text", "Annika Brandt, Director of Digital Services"),
        Block("text", "Lars Petersen, Head of Legal Affairs"),
        Block("text", "Sophie Kramer, Board Secretary (minutes)"),
        Block("text", "Apologies: Henrik Vogel, Director of Operations"),
        Block("heading", "Agenda"),
        Block("text", "1. Approval of the minutes of 17 February 2026"),
        Block("text", "2. Harbour Renovation Project: progress report"),
        Block("text", "3. IT Modernisation Programme: budget request"),
        Block("text", "4. Revision of the Travel and Expenses Policy"),
        Block("text", "5. Any other business"),
        Block("footer", "Page 1 of 2"),
    ],
    [
        Block("subtitle", "Decisions"),
        Block("heading", "Item 1: Minutes"),
        Block("text", "The minutes of 17 February 2026 were approved without amendment."),
        Block("heading", "Item 2: Harbour Renovation Project"),
        Block(
            "text",
            "The Board noted the progress report. Construction works remain scheduled to "
            "start in September 2026.",
        ),
        Block("heading", "Item 3: IT Modernisation Programme"),
        Block("text", "The approved budget of the IT Modernisation Programme is EUR 1,980,000."),
        Block(
            "text",
            "The programme replaces the document management system and the finance ledger "
            "by June 2027.",
        ),
        Block("heading", "Item 4: Travel and Expenses Policy"),
        Block("text", "The revised policy was adopted with effect from 1 May 2026."),
        Block("heading", "Item 5: Any other business"),
        Block("text", "No other business was raised."),
        Block("rule"),
        Block("text", "The next meeting is on 21 April 2026."),
        Block("text", "Signed: Margarethe Olsen, Chair"),
        Block("footer", "Page 2 of 2"),
    ],
]


PDF_PAGE_SIZE = (595, 842)
PDF_MARGIN = 72
PDF_STYLES: dict[str, tuple[str, Path, float, float]] = {
    "title": ("F2", SANS_BOLD, 20, 0),
    "subtitle": ("F1", SANS, 10, 4),
    "heading": ("F2", SANS_BOLD, 13, 18),
    "text": ("F1", SANS, 11, 6),
    "footer": ("F1", SANS, 9, 0),
}

SCAN_STYLES: dict[str, tuple[Path, int, int]] = {
    "title": (SERIF_BOLD, 46, 0),
    "subtitle": (SERIF_BOLD, 40, 12),
    "heading": (SERIF_BOLD, 36, 30),
    "text": (SERIF, 34, 10),
    "field": (SERIF, 34, 4),
    "rule": (SERIF, 34, 10),
    "footer": (SERIF, 28, 0),
}
FIELD_INDENT = 210
MEMO_SIZE = (1700, 1100)
MEMO_MARGIN = 130
A4_SIZE = (1654, 2339)
A4_MARGIN = 170


@cache
def load_font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def wrap(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines


def pdf_string(text: str) -> bytes:
    out = bytearray(b"(")
    for byte in text.encode("cp1252"):
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif 32 <= byte < 127:
            out.append(byte)
        else:
            out += b"\\%03o" % byte
    return bytes(out + b")")


def pdf_page_content(blocks: Sequence[Block]) -> bytes:
    width = PDF_PAGE_SIZE[0] - 2 * PDF_MARGIN
    y = float(PDF_PAGE_SIZE[1] - PDF_MARGIN)
    lines: list[bytes] = []

    def show(font: str, size: float, x: float, baseline: float, text: str) -> None:
        lines.append(
            b"BT /%s %g Tf %g %g Td %s Tj ET" % (font.encode(), size, x, baseline, pdf_string(text))
        )

    for index, block in enumerate(blocks):
        font, metrics, size, space_before = PDF_STYLES[block.kind]
        if block.kind == "footer":
            show(font, size, PDF_MARGIN, PDF_MARGIN / 2, block.text)
            continue
        if index:
            y -= space_before
        for text in wrap(block.text, load_font(metrics, 1000), width * 1000 / size):
            y -= size * 1.35
            show(font, size, PDF_MARGIN, y, text)
    if y < PDF_MARGIN:
        raise ValueError("PDF page content does not fit on the page")
    return b"\n".join(lines) + b"\n"


def text_pdf(pages: Sequence[Sequence[Block]], title: str) -> bytes:
    """A PDF with a real text layer, using the standard Helvetica fonts (nothing embedded)."""
    page_ids = [6 + 2 * index for index in range(len(pages))]
    kids = b" ".join(b"%d 0 R" % page_id for page_id in page_ids)
    created = FIXED_TIME.strftime("D:%Y%m%d%H%M%SZ").encode()
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages)),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold"
        b" /Encoding /WinAnsiEncoding >>",
        5: b"<< /Title %s /Author %s /Producer (make_sample_share.py) /CreationDate (%s) >>"
        % (pdf_string(title), pdf_string(ORGANISATION), created),
    }
    for page_id, blocks in zip(page_ids, pages, strict=True):
        content = pdf_page_content(blocks)
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d]"
            b" /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>"
            % (*PDF_PAGE_SIZE, page_id + 1)
        )
        objects[page_id + 1] = (
            b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"
        )

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []
    for number in range(1, len(objects) + 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref_offset = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 5 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_offset
    return bytes(out)


def render_scan(
    blocks: Sequence[Block], size: tuple[int, int], margin: int, seed: int
) -> Image.Image:
    """A page as it would come out of an office scanner: greyish paper, soft ink, specks."""
    page = Image.new("L", size, PAPER)
    draw = ImageDraw.Draw(page)
    y = margin
    for index, block in enumerate(blocks):
        path, px, space_before = SCAN_STYLES[block.kind]
        font = load_font(path, px)
        line_height = round(px * 1.45)
        if block.kind == "footer":
            draw.text(
                (size[0] // 2, size[1] - margin // 2), block.text, fill=INK, font=font, anchor="ms"
            )
            continue
        if index:
            y += space_before
        if block.kind == "rule":
            y += line_height // 2
            draw.line([(margin, y), (size[0] - margin, y)], fill=INK, width=3)
            y += line_height // 2
        elif block.kind == "field":
            draw.text((margin, y), block.label, fill=INK, font=load_font(SERIF_BOLD, px))
            draw.text((margin + FIELD_INDENT, y), block.text, fill=INK, font=font)
            y += line_height
        else:
            for line in wrap(block.text, font, size[0] - 2 * margin):
                draw.text((margin, y), line, fill=INK, font=font)
                y += line_height
    if y > size[1] - margin:
        raise ValueError("scanned page content does not fit on the page")
    return add_scan_noise(page.filter(ImageFilter.GaussianBlur(SCAN_BLUR)), seed)


def add_scan_noise(page: Image.Image, seed: int) -> Image.Image:
    rng = random.Random(seed)
    pixels = page.load()
    assert pixels is not None
    width, height = page.size
    for _ in range(width * height // SPECKLE_AREA):
        x, y = rng.randrange(width), rng.randrange(height)
        pixels[x, y] = min(pixels[x, y], rng.randint(180, 228))
    return page


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", dpi=(SCAN_DPI, SCAN_DPI), optimize=True)
    return buffer.getvalue()


def image_pdf(pages: Sequence[Image.Image], title: str) -> bytes:
    """An image-only PDF, one scanned page per PDF page, without any text layer."""
    stamp = time.gmtime(FIXED_TIME.timestamp())
    buffer = io.BytesIO()
    pages[0].save(
        buffer,
        "PDF",
        save_all=True,
        append_images=list(pages[1:]),
        resolution=SCAN_DPI,
        quality=JPEG_QUALITY,
        optimize=True,
        title=title,
        author=ORGANISATION,
        creationDate=stamp,
        modDate=stamp,
    )
    return buffer.getvalue()


def remote_work_docx() -> bytes:
    document = Document()
    document.add_heading(REMOTE_WORK_TITLE, level=1)
    for heading, paragraphs in REMOTE_WORK_SECTIONS:
        document.add_heading(heading, level=2)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    return docx_bytes(document, REMOTE_WORK_TITLE, ORGANISATION)


def docx_bytes(document: Any, title: str, author: str) -> bytes:
    """The document's bytes with fixed metadata and timestamps: the same every time."""
    properties = document.core_properties
    properties.title = title
    properties.author = author
    properties.last_modified_by = author
    properties.comments = ""
    properties.created = FIXED_TIME
    properties.modified = FIXED_TIME
    properties.revision = 1
    buffer = io.BytesIO()
    document.save(buffer)
    return with_fixed_zip_timestamps(buffer.getvalue())


def with_fixed_zip_timestamps(data: bytes) -> bytes:
    """python-docx stamps every zip member with the current time; pin them for determinism."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            member = zipfile.ZipInfo(name, date_time=FIXED_TIME.timetuple()[:6])
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            target.writestr(member, source.read(name))
    return out.getvalue()


def build_share() -> dict[str, bytes]:
    memo = render_scan(MEMO_PAGE, MEMO_SIZE, MEMO_MARGIN, seed=1)
    minutes = [
        render_scan(blocks, A4_SIZE, A4_MARGIN, seed=10 + index)
        for index, blocks in enumerate(MINUTES_PAGES)
    ]
    return {
        "policies/travel-and-expenses.md": TRAVEL_AND_EXPENSES_MD.encode(),
        "policies/information-security.md": INFORMATION_SECURITY_MD.encode(),
        "policies/remote-work.docx": remote_work_docx(),
        "finance/procurement-guidelines.pdf": text_pdf(PROCUREMENT_PAGES, "Procurement Guidelines"),
        "finance/harbour-renovation-memo.png": png_bytes(memo),
        "finance/board-minutes-2026-03.pdf": image_pdf(
            minutes, "Minutes of the Executive Board, 24 March 2026"
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "sample-share",
        help="folder to write the share into (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    for name, data in build_share().items():
        path = args.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"{len(data):>8}  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
