"""Turning text into vectors.

A model folder may name the instructions its model was trained with, as sentence-transformers
prompts `query` and `document` in `config_sentence_transformers.json` (multilingual-e5:
"query: " and "passage: "); the embedder adds them, callers never do. `model_id` is the
folder's name with a fingerprint of its configuration and weights, so two different models
in folders of the same name are told apart.

Besides one vector per text, the embedder gives the model's contextual vector of each of a
text's tokens (`TokenEmbedder`), for late interaction (retrieval/reranker.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from retrieval.errors import EmbedderUnavailable

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


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


class TokenEmbedder(Protocol):
    """Maps a text to one unit-length vector per token of its own (a tokens x dimension
    array): no padding, no special tokens such as <s> and </s>, none of the prompt's. Each
    vector is the token read in its context, so a word's vector carries its sense in this
    text, and a question's word lies close to the same notion in a passage of another
    language."""

    def query_token_vectors(self, text: str) -> NDArray[np.float32]: ...

    def document_token_vectors(self, texts: Sequence[str]) -> list[NDArray[np.float32]]: ...


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

    def query_token_vectors(self, text: str) -> NDArray[np.float32]:
        return self._token_vectors([text], QUERY_PROMPT)[0]

    def document_token_vectors(self, texts: Sequence[str]) -> list[NDArray[np.float32]]:
        return self._token_vectors(texts, DOCUMENT_PROMPT)

    def _token_vectors(self, texts: Sequence[str], prompt: str) -> list[NDArray[np.float32]]:
        if not texts:
            return []
        import torch

        prompt_name = self._prompt_name(prompt)
        # All of the model's outputs, so each text's token ids come with its vectors.
        outputs = self._run(texts, prompt_name, output_value=None)
        per_text = cast("list[dict[str, torch.Tensor]]", outputs)  # a list of texts, not one
        tokenizer = self._model.tokenizer
        special = torch.tensor(sorted(tokenizer.all_special_ids))
        # The prompt alone ends in a lone "▁" its text's first word absorbs, so the prompt's
        # tokens are the ones a text shares with it from the start.
        prompt_ids = tokenizer(self._model.prompts[prompt_name])["input_ids"] if prompt_name else []
        vectors = []
        for output in per_text:
            ids = output["input_ids"]
            own = output["attention_mask"].bool() & ~torch.isin(ids, special)
            own[: _common_prefix(ids.tolist(), prompt_ids)] = False
            kept = output["token_embeddings"][own].float()
            vectors.append(torch.nn.functional.normalize(kept, dim=1).numpy())
        return vectors

    def _encode(self, texts: Sequence[str], prompt: str) -> list[list[float]]:
        if not texts:
            return []
        import torch

        vectors = self._run(texts, self._prompt_name(prompt), convert_to_tensor=True)
        return torch.nn.functional.normalize(vectors.float(), dim=1).tolist()

    def _prompt_name(self, prompt: str) -> str | None:
        """The prompt's name when the model folder defines it (e5 does, MiniLM does not)."""
        return prompt if prompt in self._model.prompts else None

    def _run(self, texts: Sequence[str], prompt_name: str | None, **outputs: Any) -> Any:
        """The model over the texts, in bfloat16 where the CPU computes it natively."""
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bfloat16):
            return self._model.encode(
                list(texts),
                prompt_name=prompt_name,
                batch_size=self._batch_size,
                show_progress_bar=False,
                **outputs,
            )


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


def _common_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    """How many items the two sequences share from their start."""
    shared = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        shared += 1
    return shared


def _native_bfloat16() -> bool:
    """Whether the CPU computes bfloat16 in hardware; emulated, it is slower than float32."""
    import torch

    return bool(
        torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
