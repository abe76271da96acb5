"""The direct readers for text, Markdown and HTML."""

from __future__ import annotations

from ingest.document import Block
from ingest.plain import decode, html_blocks, markdown_blocks, text_blocks


def rows(table: list[list[str]]) -> list[Block]:
    header, *body = table
    return [Block("table", "; ".join(f"{h}: {v}" for h, v in zip(header, row, strict=False)))
            for row in body]  # fmt: skip


def pairs(blocks: list[Block]) -> list[tuple[str, str]]:
    return [(block.kind, block.text) for block in blocks]


def test_markdown_structure_becomes_blocks() -> None:
    text = """Leave Policy
============

Intro line one
continues **here** with a [link](http://intranet/x).

## Annual leave

- 30 days per year
- carried over until *March*

| Grade | Days |
|-------|-----:|
| A     | 30   |
| B     | 32   |

```
code stays
```
### Trailing hashes ###
"""
    assert pairs(markdown_blocks(text, rows)) == [
        ("heading", "Leave Policy"),
        ("text", "Intro line one continues here with a link."),
        ("heading", "Annual leave"),
        ("text", "30 days per year"),
        ("text", "carried over until March"),
        ("table", "Grade: A; Days: 30"),
        ("table", "Grade: B; Days: 32"),
        ("text", "code stays"),
        ("heading", "Trailing hashes"),
    ]


def test_html_keeps_headings_paragraphs_and_table_rows_and_drops_scripts() -> None:
    raw = b"""<html><head><title>t</title><style>p{}</style></head><body>
    <h1>Parking</h1><p>Permits cost <b>EUR 40</b> per month.</p>
    <script>alert('x')</script>
    <table><tr><th>Zone</th><th>Price</th></tr><tr><td>North</td><td>EUR 40</td></tr></table>
    <ul><li>Apply online</li><li>Show your badge</li></ul></body></html>"""
    assert pairs(html_blocks(raw, rows)) == [
        ("heading", "Parking"),
        ("text", "Permits cost EUR 40 per month."),
        ("table", "Zone: North; Price: EUR 40"),
        ("text", "Apply online"),
        ("text", "Show your badge"),
    ]


def test_html_honours_its_declared_charset() -> None:
    raw = '<meta charset="iso-8859-15"><p>Gebühr: 5 €</p>'.encode("iso-8859-15")
    assert pairs(html_blocks(raw, rows)) == [("text", "Gebühr: 5 €")]


def test_text_is_decoded_whatever_its_encoding() -> None:
    assert decode("Grüße".encode()) == "Grüße"
    assert decode("\ufeffGrüße".encode()) == "Grüße"
    assert decode("Grüße".encode("cp1252")) == "Grüße"
    assert decode(b"\x81\x8d\x8f") == "\ufffd\ufffd\ufffd"  # undefined even in cp1252
    assert pairs(text_blocks("First  para\ngraph.\n\n\nSecond.")) == [
        ("text", "First para graph."),
        ("text", "Second."),
    ]
