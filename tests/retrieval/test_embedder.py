from pathlib import Path
from typing import Any

import pytest

from retrieval.embedder import SentenceTransformerEmbedder
from retrieval.errors import EmbedderUnavailable


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_packaged_model_embeds_meaning_across_languages(embedder: Any) -> None:
    assert embedder.dimension == 384
    passages = embedder.embed_documents(
        [
            "Employees receive 30 days of annual leave.",
            "Boiler pressure must be checked every month.",
            "Visitors park in the east car park.",
        ]
    )
    assert abs(cosine(passages[0], passages[0]) - 1.0) < 1e-4
    for question in (
        "How much holiday do I get?",
        "Combien de jours de congés ai-je par an ?",
        "Wie viele Urlaubstage bekomme ich?",
    ):
        query = embedder.embed_query(question)
        leave, *others = (cosine(query, passage) for passage in passages)
        assert leave > max(others), question


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
