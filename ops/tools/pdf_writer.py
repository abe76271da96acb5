"""A one-page PDF with a text layer in a standard font, for generated test and benchmark files.

No font is embedded and nothing outside the standard library is needed, so the files can be
written on any machine. `invisible` uses render mode 3, as OCR software writes its text layer
under a scanned image.
"""

from __future__ import annotations

from collections.abc import Sequence


def one_page_text_pdf(lines: Sequence[str], invisible: bool = False) -> bytes:
    shown = b" ".join(
        b"(%s) '" % line.encode("latin-1").replace(b"(", b"[").replace(b")", b"]") for line in lines
    )
    mode = b"3 Tr " if invisible else b""
    content = b"BT " + mode + b"/F1 10 Tf 40 800 Td 13 TL " + shown + b" ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
        b" /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n"
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)
