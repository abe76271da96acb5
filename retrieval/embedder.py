"""Turning text into vectors.

A model folder may name the instructions its model was trained with, as sentence-transformers
prompts `query` and `document` in `config_sentence_transformers.json` (multilingual-e5:
"query: " and "passage: "); the embedder adds them, callers never do. `model_id` is the
folder's name with a fingerprint of its configuration and weights, so two different models
in folders of the same name are told apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from retrieval.errors import EmbedderUnavailable


class Embedder(Protocol):
    """Maps texts to unit-length vectors of a fixed dimension.

    `embed_documents` and `embed_query` return lists of floats; similar texts give vectors
    with a high cosine similarity. `model_id` names the model, so an index built with one
    model is never searched with another.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, on the CPU."""

    def __init__(self, model_dir: Path, batch_size: int = 64, precision: str = "auto") -> None:
        if not (model_dir / "config.json").is_file():
            raise EmbedderUnavailable(
                f"embedding model folder {model_dir} is missing or incomplete; run `make setup`"
            )
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self._batch_size = batch_size
        self._model_id = model_identity(model_dir)
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise EmbedderUnavailable(f"model in {model_dir} does not report its dimension")
        self._dimension = int(dimension)
        self._bfloat16 = precision == "bfloat16" or (precision == "auto" and _native_bfloat16())

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._encode(texts, DOCUMENT_PROMPT)

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text], QUERY_PROMPT)[0]

    def _encode(self, texts: Sequence[str], prompt: str) -> list[list[float]]:
        if not texts:
            return []
        import torch

        prompt_name = prompt if prompt in self._model.prompts else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bfloat16):
            vectors = self._model.encode(
                list(texts),
                prompt_name=prompt_name,
                batch_size=self._batch_size,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        return torch.nn.functional.normalize(vectors.float(), dim=1).tolist()


QUERY_PROMPT = "query"
DOCUMENT_PROMPT = "document"


def model_identity(model_dir: Path) -> str:
    """The folder's name and a fingerprint of its configuration and weight files."""
    folder = model_dir.resolve()
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            relative = path.relative_to(folder).as_posix()
            digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
            if path.suffix == ".json" and path.stat().st_size < 1_000_000:
                digest.update(path.read_bytes())
    return f"{folder.name}@{digest.hexdigest()[:12]}"


def _native_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 in hardware; emulated, it is slower than float32."""
    import torch

    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
