"""Late interaction: the embedder's token vectors, MaxSim over them, and the opt-in second look
at the fused candidates it gives when no cross-encoder is configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.root import build_retriever
from retrieval.access import Scope
from retrieval.build import build_reranker
from retrieval.models import Chunk, Hit
from retrieval.reranker import (
    LATE_INTERACTION_WEIGHT,
    CrossEncoderReranker,
    LateInteractionReranker,
    max_sim,
    z_scores,
)
from settings import Settings
from tests.conftest import make_settings

BOILER_ANSWER = (
    "Boiler room. The caretaker checks the boiler pressure every month and writes the reading "
    "in the maintenance log; below 1 bar, the heating contractor is called."
)
BOILER_NEAR_MISSES = [
    "Heating. The boiler was replaced in 2019 and its warranty covers parts for five years.",
    "Maintenance log. Every repair to the building is written down with its date and cost.",
    "Tyres. Check the pressure of the pool car's tyres before a long journey.",
]
LEAVE_ANSWER = (
    "Annual leave. Full-time employees are entitled to 30 working days of paid leave per "
    "calendar year; part-time staff receive a pro-rata share."
)
LEAVE_NEAR_MISSES = [
    "Leave requests. Employees request leave in the HR portal at least two weeks ahead.",
    "Sick leave. A doctor's certificate is needed from the third day of absence.",
    "Public holidays. The office is closed on the public holidays of the canton.",
]


def tokens_of(text: str) -> list[int]:
    """The text's own token ids under the model's tokenizer, without special tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(Settings().embedder_dir), local_files_only=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def hit(text: str, n: int, score: float, similarity: float = 0.8, coverage: float = 0.5) -> Hit:
    chunk = Chunk(id=f"c{n}", doc_id="d", ordinal=n, text=text, path="/s/facilities.md",
                  content_sha256="0" * 64, acl=frozenset({"everyone"}), mtime=0.0)  # fmt: skip
    return Hit(chunk=chunk, score=score, similarity=similarity, coverage=coverage)


def test_token_vectors_are_unit_length_one_per_token_of_the_text(embedder: Any) -> None:
    question = "How often is the boiler pressure checked?"
    passages = [BOILER_ANSWER, "Boilers."]  # of different lengths: the short one is padded
    query_vectors = embedder.query_token_vectors(question)
    passage_vectors = embedder.document_token_vectors(passages)
    assert query_vectors.shape == (len(tokens_of(question)), embedder.dimension)
    for text, vectors in zip(passages, passage_vectors, strict=True):
        assert vectors.shape == (len(tokens_of(text)), embedder.dimension)
    for vectors in [query_vectors, *passage_vectors]:
        assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-4)
    alone = embedder.document_token_vectors(["Boilers."])[0]
    assert np.sum(alone * passage_vectors[1], axis=1) == pytest.approx(1.0, abs=1e-2)


def test_no_texts_give_no_token_vectors(embedder: Any) -> None:
    assert embedder.document_token_vectors([]) == []


@pytest.mark.parametrize(
    ("question", "answer", "near_misses"),
    [
        ("How often is the boiler pressure checked?", BOILER_ANSWER, BOILER_NEAR_MISSES),
        ("À quelle fréquence la pression de la chaudière est-elle contrôlée ?", BOILER_ANSWER,
         BOILER_NEAR_MISSES),
        ("How many days of annual leave do full-time employees get?", LEAVE_ANSWER,
         LEAVE_NEAR_MISSES),
        ("Combien de jours de congé annuel ont les employés à plein temps ?", LEAVE_ANSWER,
         LEAVE_NEAR_MISSES),
    ],
)  # fmt: skip
def test_max_sim_ranks_the_answering_passage_above_near_misses(
    embedder: Any, question: str, answer: str, near_misses: list[str]
) -> None:
    query = embedder.query_token_vectors(question)
    answer_vectors, *miss_vectors = embedder.document_token_vectors([answer, *near_misses])
    answer_score = max_sim(query, answer_vectors)
    assert all(answer_score > max_sim(query, vectors) for vectors in miss_vectors)


def test_max_sim_is_the_mean_of_each_question_tokens_best_match() -> None:
    question = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    passage = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    assert max_sim(question, passage) == pytest.approx((1.0 + 0.8) / 2)
    assert max_sim(question, np.zeros((0, 2), dtype=np.float32)) == 0.0


def test_z_scores_standardise_and_equal_values_give_zero() -> None:
    assert z_scores([1.0, 2.0, 3.0]) == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)
    assert z_scores([0.8, 0.8, 0.8]) == [0.0, 0.0, 0.0]


def test_the_reranker_keeps_every_candidate_and_its_similarity_and_coverage(
    embedder: Any,
) -> None:
    texts = [*BOILER_NEAR_MISSES, BOILER_ANSWER]
    hits = [hit(text, n, score=1.0 - 0.01 * n, similarity=0.80 + 0.01 * n, coverage=0.1 * n)
            for n, text in enumerate(texts)]  # fmt: skip
    question = "How often is the boiler pressure checked?"
    reranked = LateInteractionReranker(embedder).rerank(question, hits)

    assert sorted(h.chunk.id for h in reranked) == sorted(h.chunk.id for h in hits)
    before = {h.chunk.id: h for h in hits}
    for after in reranked:
        assert after.similarity == before[after.chunk.id].similarity
        assert after.coverage == before[after.chunk.id].coverage
    assert reranked[0].chunk.text == BOILER_ANSWER  # fused last, within 0.03 of the first
    query = embedder.query_token_vectors(question)
    standardised = z_scores(
        [max_sim(query, v) for v in embedder.document_token_vectors(
            [h.chunk.embedding_text() for h in hits])]
    )  # fmt: skip
    expected = {h.chunk.id: h.score + LATE_INTERACTION_WEIGHT * z
                for h, z in zip(hits, standardised, strict=True)}  # fmt: skip
    assert [h.score for h in reranked] == pytest.approx([expected[h.chunk.id] for h in reranked])
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)


def test_the_fused_order_still_counts_and_ties_go_to_the_smaller_chunk_id(
    embedder: Any,
) -> None:
    far_ahead = [hit(BOILER_NEAR_MISSES[0], 0, score=2.0), hit(BOILER_ANSWER, 1, score=0.5)]
    question = "How often is the boiler pressure checked?"
    assert [h.chunk.id for h in LateInteractionReranker(embedder).rerank(question, far_ahead)] == [
        "c0", "c1"]  # fmt: skip
    same = [hit(BOILER_ANSWER, n, score=1.0) for n in (3, 1, 2)]
    reranked = LateInteractionReranker(embedder).rerank(question, same)
    assert [h.chunk.id for h in reranked] == ["c1", "c2", "c3"]
    assert [h.score for h in reranked] == [1.0, 1.0, 1.0]
    assert LateInteractionReranker(embedder).rerank(question, []) == []


def test_late_interaction_is_off_by_default_and_on_with_its_setting(
    tmp_path: Path, embedder: Any
) -> None:
    assert build_reranker(make_settings(tmp_path), embedder) is None
    settings: Any = make_settings(tmp_path, retrieval={"late_interaction": True})
    assert isinstance(build_reranker(settings, embedder), LateInteractionReranker)


def test_a_configured_cross_encoder_takes_precedence(
    tmp_path: Path, embedder: Any, cross_encoder_dir: Path
) -> None:
    settings: Any = make_settings(
        tmp_path, retrieval={"late_interaction": True, "reranker_dir": cross_encoder_dir}
    )
    assert isinstance(build_reranker(settings, embedder), CrossEncoderReranker)


def test_the_retriever_looks_again_at_its_fused_candidates(ingested: Settings) -> None:
    settings = ingested.model_copy(
        update={"retrieval": ingested.retrieval.model_copy(
            update={"late_interaction": True, "rerank_candidates": 12})}
    )  # fmt: skip
    plain = build_retriever(ingested).search("harbour budget", Scope.operator(), 12)
    looked_again = build_retriever(settings).search("harbour budget", Scope.operator(), 3)
    assert len(looked_again) == 3
    by_id = {h.chunk.id: h for h in plain}
    for found in looked_again:
        assert found.similarity == pytest.approx(by_id[found.chunk.id].similarity)
        assert found.coverage == by_id[found.chunk.id].coverage
    assert [h.score for h in looked_again] == sorted((h.score for h in looked_again), reverse=True)
