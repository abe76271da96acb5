"""Fusing the vector and keyword halves: scores, the exact-token signal, a stable order."""

from __future__ import annotations

import zlib

import pytest

from retrieval.access import EVERYONE
from retrieval.fusion import Candidate, exact_tokens, fuse
from retrieval.models import Chunk, chunk_id, document_id


def passage(text: str, name: str = "notes") -> Chunk:
    doc = document_id(f"/share/{name}.md")
    return Chunk(
        id=chunk_id(doc, zlib.crc32(text.encode()) % 10_000),
        doc_id=doc,
        ordinal=0,
        text=text,
        path=f"/share/{name}.md",
        language="en",
        content_sha256="0" * 64,
        acl=frozenset({EVERYONE}),
        mtime=1700000000.0,
    )


def test_exact_tokens_are_the_words_carrying_a_digit() -> None:
    question = (
        "Which lift replaced A1 under contract TMG-PROC-2024-031 (case 2023/0457), for 36,783.74?"
    )
    assert exact_tokens(question) == ["tmg-proc-2024-031", "2023/0457", "36,783.74"]
    assert exact_tokens("What is the travel policy?") == []


def test_a_passage_holding_the_rare_code_comes_first() -> None:
    alike = [passage(f"Record amended, new reference REF-{5000 + n}.", f"e{n}") for n in range(9)]
    holder = passage("Record reviewed, new reference AMEND-4711.", "holder")
    near = [1.0, 0.0]
    found = [Candidate.of(c, near, 2.0) for c in alike] + [Candidate.of(holder, [0.9, 0.436], 2.1)]
    hits = fuse("record amended new reference AMEND-4711", near, found, 3)
    assert hits[0].chunk == holder
    assert hits[0].similarity < hits[1].similarity  # it won on the code, not the vector


def test_a_code_every_candidate_holds_tells_nothing() -> None:
    texts = ["Budget 2024 for the north wing.", "Budget 2024 for the south wing."]
    north, south = (passage(t, t[-11:-6]) for t in texts)
    query = [1.0, 0.0]
    found = [Candidate.of(north, [0.8, 0.6]), Candidate.of(south, [0.9, 0.436])]
    hits = fuse("budget 2024 wing", query, found, 2)
    assert [h.chunk for h in hits] == [south, north]  # the vector decides


def test_a_passage_both_halves_found_counts_once_with_its_keyword_score() -> None:
    one, other = passage("Steam sterilisers.", "a"), passage("Infusion pumps.", "b")
    far = passage("Parking rules.", "c")
    query = [1.0, 0.0]
    found = [
        Candidate.of(one, [0.68, 0.733]),
        Candidate.of(other, [0.7, 0.714]),
        Candidate.of(far, [0.2, 0.98]),
        Candidate.of(one, [0.68, 0.733], 3.0),
    ]
    hits = fuse("steam", query, found, 5)
    assert [h.chunk for h in hits] == [one, other, far]


def test_the_vector_half_counts_alike_whatever_the_spread_of_the_models_cosines() -> None:
    meaning, words = passage("Gate closes at dusk.", "m"), passage("Gate gate gate.", "w")
    query = [1.0, 0.0]
    for near, far in (([0.95, 0.312], [0.65, 0.76]), ([0.90, 0.436], [0.88, 0.475])):
        found = [Candidate.of(meaning, near, 1.0), Candidate.of(words, far, 2.0)]
        hits = fuse("gate", query, found, 2)
        assert [h.chunk for h in hits] == [meaning, words]
        assert hits[0].similarity == pytest.approx(near[0], abs=1e-3)


def test_ties_are_broken_by_chunk_id_whatever_the_order_found() -> None:
    chunks = [passage(f"Same text {n}", f"n{n}") for n in range(6)]
    found = [Candidate.of(c, [1.0, 0.0]) for c in chunks]
    forward = fuse("same", [1.0, 0.0], found, 6)
    backward = fuse("same", [1.0, 0.0], list(reversed(found)), 6)
    assert [h.chunk.id for h in forward] == [h.chunk.id for h in backward]
    assert [h.chunk.id for h in forward] == sorted(c.id for c in chunks)
