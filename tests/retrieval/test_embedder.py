from pathlib import Path
from typing import Any

import pytest

from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.errors import EmbedderUnavailable


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_packaged_model_embeds_meaning(embedder: Any) -> None:
    assert embedder.dimension == 384
    leave, holiday, boiler = embedder.embed_documents(
        [
            "Employees receive 30 days of annual leave.",
            "How much holiday do I get?",
            "Boiler pressure",
        ]
    )
    assert cosine(leave, holiday) > cosine(leave, boiler) + 0.2
    assert abs(cosine(leave, leave) - 1.0) < 1e-4
    assert embedder.embed_query("How much holiday do I get?") == pytest.approx(holiday, abs=1e-5)


def test_a_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderUnavailable, match="make setup"):
        SentenceTransformerEmbedder(tmp_path / "nothing-here")


def test_bfloat16_gives_the_float32_vectors_within_rounding(embedder: Any) -> None:
    from settings import Settings

    model_dir = Settings().embedder_dir
    texts = ["Minutes of the harbour board, 14 March.", "Das Budget beträgt 4,75 Mio. EUR."]
    exact = SentenceTransformerEmbedder(model_dir, precision="float32").embed_documents(texts)
    fast = SentenceTransformerEmbedder(model_dir, precision="bfloat16").embed_documents(texts)
    for a, b in zip(exact, fast, strict=True):
        assert cosine(a, b) > 0.999
        assert abs(cosine(b, b) - 1.0) < 1e-4
