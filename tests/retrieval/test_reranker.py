"""The optional reranking stage: a real cross-encoder from a local folder, or none at all.

The cross-encoder is a real one loaded offline from a folder (`cross_encoder_dir` in
conftest.py): its scores mean nothing, but the stage must order by them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.root import build_retriever
from retrieval.access import Scope
from retrieval.build import build_reranker
from retrieval.errors import RerankerUnavailable
from retrieval.models import Chunk, Hit
from retrieval.reranker import CrossEncoderReranker
from settings import Settings
from tests.conftest import make_settings


def hit(text: str, n: int) -> Hit:
    chunk = Chunk(id=f"c{n}", doc_id="d", ordinal=n, text=text, path="/s/a.md",
                  content_sha256="0" * 64, acl=frozenset({"everyone"}), mtime=0.0)  # fmt: skip
    return Hit(chunk=chunk, score=1.0 / (n + 1))


def test_hits_come_back_ordered_by_the_cross_encoders_scores(cross_encoder_dir: Path) -> None:
    from sentence_transformers import CrossEncoder

    hits = [hit(text, n) for n, text in enumerate(["Leave is 30 days.", "Boilers", "Parking"])]
    reranked = CrossEncoderReranker(cross_encoder_dir).rerank("How much leave?", hits)
    direct = CrossEncoder(str(cross_encoder_dir), local_files_only=True).predict(
        [("How much leave?", h.chunk.embedding_text()) for h in hits]
    )
    expected = sorted(zip(direct, hits, strict=True), key=lambda pair: -pair[0])
    assert [h.chunk.id for h in reranked] == [h.chunk.id for _, h in expected]
    assert [h.score for h in reranked] == pytest.approx([float(s) for s, _ in expected])


def test_the_retriever_reranks_more_candidates_than_it_returns(
    ingested: Settings, cross_encoder_dir: Path
) -> None:
    settings = ingested.model_copy(
        update={"retrieval": ingested.retrieval.model_copy(
            update={"reranker_dir": cross_encoder_dir, "rerank_candidates": 12})}
    )  # fmt: skip
    retriever = build_retriever(settings)
    plain = build_retriever(ingested).search("harbour budget", Scope.operator(), 12)
    reranked = retriever.search("harbour budget", Scope.operator(), 3)
    assert len(reranked) == 3
    assert {h.chunk.id for h in reranked} <= {h.chunk.id for h in plain}
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)


def test_no_reranker_is_configured_by_default_and_a_missing_folder_is_a_clear_error(
    tmp_path: Path, embedder: Any
) -> None:
    assert build_reranker(make_settings(tmp_path), embedder) is None
    settings: Any = make_settings(tmp_path, retrieval={"reranker_dir": tmp_path / "missing"})
    with pytest.raises(RerankerUnavailable, match="RAG_RETRIEVAL__RERANKER_DIR"):
        build_reranker(settings, embedder)
