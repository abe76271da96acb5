"""Changing the embedding model: the index names its model, a mismatch is refused, a
rebuild migrates. The second model is a real copy of the packaged one in a folder of
another name, which the appliance must tell apart."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from appliance.root import build_retriever
from ingest.ledger import UNRECORDED_MODEL, Ledger
from ingest.pipeline import Ingestor
from retrieval.access import Scope
from retrieval.build import build_store
from retrieval.embedder import SentenceTransformerEmbedder, model_identity
from retrieval.errors import IndexModelMismatch
from settings import Settings
from tests.conftest import RAG, SAMPLE_SHARE, make_settings


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    root.mkdir()
    shutil.copy(SAMPLE_SHARE / "policies" / "travel-and-expenses.md", root)
    return root


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged model's files, hard-linked into a folder of another name."""
    target = tmp_path_factory.mktemp("models") / "another-embedder"
    shutil.copytree(Settings().embedder_dir, target, copy_function=os.link)
    return target


def ingestor_for(settings: Settings, model_dir: Path) -> Ingestor:
    embedder = SentenceTransformerEmbedder(model_dir)
    return Ingestor(settings, embedder, build_store(settings), Ledger(settings.ledger_path))


def test_the_index_names_its_model_and_refuses_another_until_rebuilt(
    share: Path, tmp_path: Path, embedder: Any, other_model_dir: Path
) -> None:
    settings = make_settings(tmp_path / "data")
    first = Ingestor(settings, embedder, build_store(settings), Ledger(settings.ledger_path))
    first.run([str(share)])
    assert first._ledger.index_model() == embedder.model_id
    first._store.close()

    switched = make_settings(tmp_path / "data", embedder={"model_dir": other_model_dir})
    assert model_identity(other_model_dir) != embedder.model_id
    second = ingestor_for(switched, other_model_dir)
    with pytest.raises(IndexModelMismatch, match=r"rag ingest --rebuild"):
        second.run([str(share)])
    assert second._store.count() > 0  # nothing was dropped or added
    with pytest.raises(IndexModelMismatch, match=embedder.model_id):
        build_retriever(switched, second._store).search("meal allowance", Scope.operator(), 5)

    report = second.run([str(share)], rebuild=True)
    assert report.indexed == 1 and report.failed == []
    assert second._ledger.index_model() == model_identity(other_model_dir)
    hits = build_retriever(switched, second._store).search("meal allowance", Scope.operator(), 5)
    assert hits and hits[0].chunk.path.endswith("travel-and-expenses.md")
    with pytest.raises(IndexModelMismatch):
        build_retriever(settings, second._store).search("meal allowance", Scope.operator(), 5)


def test_an_index_from_before_model_records_is_refused_until_rebuilt(
    share: Path, tmp_path: Path, embedder: Any
) -> None:
    settings = make_settings(tmp_path / "data")
    ingestor = Ingestor(settings, embedder, build_store(settings), Ledger(settings.ledger_path))
    ingestor.run([str(share)])
    with sqlite3.connect(settings.ledger_path) as database:
        database.execute("DELETE FROM index_facts")
    assert ingestor._ledger.index_model() == UNRECORDED_MODEL
    with pytest.raises(IndexModelMismatch, match="unrecorded model"):
        ingestor.run([str(share)])
    with pytest.raises(IndexModelMismatch, match="unrecorded model"):
        build_retriever(settings, ingestor._store).search("meal allowance", Scope.operator(), 5)
    ingestor.run([str(share)], rebuild=True)
    assert ingestor._ledger.index_model() == embedder.model_id


def test_the_cli_shows_both_models_and_refuses_a_search_in_one_line(
    share: Path, cli_env: dict[str, str], other_model_dir: Path
) -> None:
    def rag(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RAG), *args], env={**cli_env, **env}, capture_output=True, text=True, timeout=300
        )

    assert rag("ingest", str(share), "--json").returncode == 0
    other = {"RAG_EMBEDDER__MODEL_DIR": str(other_model_dir)}
    status = json.loads(rag("status", "--json", **other).stdout)
    assert status["embedder"]["configured"] == model_identity(other_model_dir)
    assert status["embedder"]["index"] == model_identity(Settings().embedder_dir)

    searched = rag("search", "meal allowance", **other)
    assert searched.returncode != 0
    error_lines = searched.stderr.strip().splitlines()
    assert len(error_lines) == 1 and "rag ingest --rebuild" in error_lines[0]

    doctor = json.loads(rag("doctor", "--json", **other).stdout)
    (check,) = [c for c in doctor["checks"] if c["name"] == "index_model"]
    assert not check["ok"] and "--rebuild" in check["detail"]

    assert rag("ingest", str(share), "--rebuild", "--json", **other).returncode == 0
    assert json.loads(rag("search", "meal allowance", "--json", **other).stdout)["hits"]
    doctor = json.loads(rag("doctor", "--json", **other).stdout)
    (check,) = [c for c in doctor["checks"] if c["name"] == "index_model"]
    assert check["ok"]
