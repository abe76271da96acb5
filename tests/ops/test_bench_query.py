"""The query benchmark at a tiny size: the generated corpus, the brute-force baseline, and the
`query` line of a real run over the embedded store."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from ingest.catalog import Catalog
from ops.tools.bench_query import (
    GROUPS,
    SHARED_NAMES,
    USER,
    base_passages,
    brute_force_top,
    main,
    make_corpus,
    questions,
    reference_code,
    write_ledger,
)
from retrieval.access import Scope
from retrieval.embedder import model_identity
from settings import PROJECT_ROOT


def test_corpus_spreads_chunks_over_groups_and_languages() -> None:
    rng = random.Random(1)
    corpus = make_corpus(base_passages(30, rng), 2000, rng)

    groups = {p for chunk in corpus.chunks for p in chunk.acl if p.startswith("group:")}
    assert len(groups) == GROUPS
    assert {chunk.language for chunk in corpus.chunks} == {"en", "fr", "de"}
    assert len({chunk.id for chunk in corpus.chunks}) == 2000
    by_document: dict[str, set[str]] = {}
    for chunk in corpus.chunks:
        by_document.setdefault(chunk.doc_id, set()).add(chunk.language)
    assert all(len(languages) == 1 for languages in by_document.values())  # one per document
    assert corpus.visible.tolist() == [bool(c.acl & USER.principals) for c in corpus.chunks]
    assert 0.05 < corpus.visible.mean() < 0.3  # the access filter matters
    assert reference_code(42) in corpus.chunks[42].text
    assert sum(reference_code(42) in chunk.text for chunk in corpus.chunks) == 1


def test_some_questions_ask_for_an_exact_code() -> None:
    asked = questions(60, ["INV-2016-000042"], random.Random(2))
    assert len(set(asked)) > 40
    assert sum("INV-2016-000042" in q for q in asked) == 10


def test_some_questions_use_a_shared_name_by_its_abbreviation() -> None:
    asked = questions(60, ["INV-2016-000042"], random.Random(2))
    shorts = {short for short, _ in SHARED_NAMES}
    assert sum(any(word in shorts for word in q.split()) for q in asked) == 5


def test_the_ledger_holds_the_index_s_documents_and_the_names_they_define(
    tmp_path: Path,
) -> None:
    rng = random.Random(1)
    corpus = make_corpus(base_passages(30, rng), 2000, rng)
    ledger_path = tmp_path / "ledger.sqlite3"

    assert write_ledger(ledger_path, corpus, "bench-model@0") == 200

    catalog = Catalog(ledger_path)
    documents = catalog.documents(Scope.operator())
    assert {entry.doc_id for entry in documents} == {chunk.doc_id for chunk in corpus.chunks}
    visible_documents = {chunk.doc_id for chunk in corpus.chunks if chunk.acl & USER.principals}
    assert {entry.doc_id for entry in catalog.documents(USER)} == visible_documents
    assert catalog.index_model() == "bench-model@0"
    dora = SHARED_NAMES[0]
    assert catalog.names_in(USER, f"What does {dora[0]} require?") == [dora]
    assert catalog.names_in(USER, f"Who enforces the {dora[1]}?") == [dora]
    assert catalog.names_in(Scope.of({"user:stranger"}), f"What does {dora[0]} require?") == []


def test_brute_force_returns_the_k_nearest_best_first() -> None:
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(500, 16)).astype(np.float32)
    query = rng.normal(size=16).astype(np.float32)

    top = brute_force_top(matrix, query, 5)

    assert top.tolist() == np.argsort(-(matrix @ query))[:5].tolist()


def test_query_line_of_a_tiny_run_with_the_configured_embedder(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder_dir = PROJECT_ROOT / "models" / "all-minilm-l6-v2"
    monkeypatch.setenv("RAG_EMBEDDER__MODEL_DIR", str(embedder_dir))
    assert main(["--chunks", "2000", "--queries", "10", "--distinct", "60", "--skip-llm"]) == 0

    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert list(line)[:5] == ["bench", "chunks", "p50_ms", "p95_ms", "bruteforce_p50_ms"]
    assert line["bench"] == "query"
    assert line["chunks"] == 2000
    assert line["queries"] == 10
    assert 0 < line["p50_ms"] <= line["p95_ms"]
    assert line["bruteforce_p50_ms"] > 0
    assert line["ratio"] == pytest.approx(line["p50_ms"] / line["bruteforce_p50_ms"], rel=0.1)
    # The store's nearest visible chunk is the exact one (a small index is searched in full).
    assert line["dense_top1_agreement"] >= 0.8
    assert line["acl_violations"] == 0
    assert line["empty_results"] == 0
    assert line["index_build_seconds"] >= 0
    assert line["embedder"] == model_identity(embedder_dir)
    # The names lookup and fusion, timed alone, are parts of a search's time.
    assert 0 < line["names_p50_ms"] < line["p50_ms"]
    assert 0 < line["fusion_p50_ms"] < line["p50_ms"]
    assert line["fusion_candidates_max"] >= 10
    assert line["expanded_questions"] == 1  # question 2 of 10 uses a shared name
