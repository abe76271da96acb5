"""Fixtures shared by the reranking tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import Settings


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real cross-encoder folder, loaded offline. No cross-encoder ships in a package these
    machines can install, so it is built from the packaged embedder's weights with a freshly
    initialised scoring head: its scores mean nothing, but the stage must order by them."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(7)
    folder = tmp_path_factory.mktemp("reranker")
    model = CrossEncoder(str(Settings().embedder_dir), num_labels=1, local_files_only=True)
    model.save(str(folder))
    return folder
