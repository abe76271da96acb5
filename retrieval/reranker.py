"""A second, closer look at the fused candidates: a cross-encoder reads query and passage
together and scores how well the passage answers the query."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from retrieval.errors import RerankerUnavailable
from retrieval.models import Hit


class Reranker(Protocol):
    """Reorders hits by relevance to the query, best first; the hit's `score` becomes the
    reranker's."""

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder loaded from a local folder, on the CPU."""

    def __init__(self, model_dir: Path, batch_size: int = 32) -> None:
        if not (model_dir / "config.json").is_file():
            raise RerankerUnavailable(
                f"reranker model folder {model_dir} is missing or incomplete; install the "
                "bundle's reranker there, or unset RAG_RETRIEVAL__RERANKER_DIR"
            )
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(str(model_dir), device="cpu", local_files_only=True)
        self._batch_size = batch_size

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        if not hits:
            return []
        scores = self._model.predict(
            [(query, hit.chunk.embedding_text()) for hit in hits],
            batch_size=self._batch_size,
            show_progress_bar=False,
        )
        rescored = [
            hit.model_copy(update={"score": float(score)})
            for hit, score in zip(hits, scores, strict=True)
        ]
        return sorted(rescored, key=lambda hit: hit.score, reverse=True)
