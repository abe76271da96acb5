from ingest.chunker import passages
from ingest.document import Block, ParsedDocument


def doc(*blocks: Block) -> ParsedDocument:
    return ParsedDocument(list(blocks))


def test_the_heading_a_passage_sits_under_travels_with_it() -> None:
    parsed = doc(
        Block("heading", "Travel Policy"),
        Block("heading", "Booking"),
        Block("text", "Book through the travel desk."),
        Block("heading", "Allowances"),
        Block("text", "The daily meal allowance is EUR 28."),
    )
    result = passages(parsed, parsed.title("fallback"), max_chars=500)
    assert [(p.section, p.text) for p in result] == [
        ("Booking", "Book through the travel desk."),
        ("Allowances", "The daily meal allowance is EUR 28."),
    ]


def test_the_title_is_the_first_heading_or_the_fallback() -> None:
    assert doc(Block("heading", "Minutes"), Block("text", "x")).title("file") == "Minutes"
    assert doc(Block("text", "x")).title("file name") == "file name"


def test_a_chunk_never_spans_two_pages() -> None:
    parsed = doc(Block("text", "first page", 1), Block("text", "second page", 2))
    assert [(p.page, p.text) for p in passages(parsed, "t", 500)] == [
        (1, "first page"),
        (2, "second page"),
    ]


def test_short_paragraphs_are_joined_up_to_the_limit() -> None:
    parsed = doc(*(Block("text", f"Paragraph number {i}.", 1) for i in range(20)))
    result = passages(parsed, "t", max_chars=200)
    assert len(result) > 1
    assert all(len(p.text) <= 200 for p in result)
    assert "\n".join(p.text for p in result).count("Paragraph number") == 20


def test_a_long_paragraph_is_cut_at_sentence_ends_and_keeps_every_word() -> None:
    sentences = [f"Sentence {i} says something about rule {i}." for i in range(60)]
    parsed = doc(Block("text", " ".join(sentences), 3))
    result = passages(parsed, "t", max_chars=300)
    assert all(len(p.text) <= 300 for p in result)
    assert all(p.text.endswith(".") for p in result)
    assert " ".join(p.text for p in result).split() == " ".join(sentences).split()


def test_a_word_longer_than_a_chunk_is_cut_hard() -> None:
    parsed = doc(Block("text", "x" * 1000))
    result = passages(parsed, "t", max_chars=300)
    assert "".join(p.text for p in result) == "x" * 1000
    assert all(len(p.text) <= 300 for p in result)
