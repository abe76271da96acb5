"""Composition of an ingestion run from the settings."""

from __future__ import annotations

from ingest.ledger import Ledger
from ingest.pipeline import Ingestor
from retrieval.build import build_embedder, build_store
from settings import Settings


def build_ingestor(settings: Settings) -> Ingestor:
    return Ingestor(
        settings, build_embedder(settings), build_store(settings), Ledger(settings.ledger_path)
    )
