"""The one settings object: environment variables with RAG_ and __, every field described."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from retrieval.build import build_store
from retrieval.edge_store import EdgeStore
from retrieval.server_store import QdrantServerStore
from settings import Settings


def all_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str | None]]:
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += all_fields(annotation, f"{prefix}{name}.")
        else:
            found.append((prefix + name, field.description))
    return found


def test_every_setting_is_described() -> None:
    undescribed = [name for name, description in all_fields(Settings) if not description]
    assert undescribed == []


def test_nested_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_DATA_DIR", "/srv/rag")
    monkeypatch.setenv("RAG_QDRANT__URL", "http://qdrant:6333")
    monkeypatch.setenv("RAG_LLM__BASE_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("RAG_OCR__LANGUAGES", "eng+ita")
    settings = Settings()
    assert settings.data_dir == Path("/srv/rag")
    assert settings.qdrant.url == "http://qdrant:6333"
    assert settings.llm.resolved_base_url() == "http://vllm:8000/v1"
    assert settings.ocr.languages == "eng+ita"


def test_the_local_llm_server_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LLM__PORT", "9123")
    assert Settings().llm.resolved_base_url() == "http://127.0.0.1:9123/v1"


def test_unknown_settings_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_LLM__MODLE", "typo")
    with pytest.raises(ValidationError):
        Settings()


def test_the_store_follows_the_qdrant_url(tmp_path: Path) -> None:
    assert isinstance(build_store(Settings(data_dir=tmp_path)), EdgeStore)
    server = build_store(Settings(data_dir=tmp_path, qdrant={"url": "http://127.0.0.1:1"}))
    assert isinstance(server, QdrantServerStore)


def test_a_secret_file_is_read_only_when_its_owner_alone_may_read_it(tmp_path: Path) -> None:
    from settings import SecretFileError, read_secret

    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    assert read_secret(secret, "RAG_SMB__PASSWORD_FILE") == "s3cret"
    secret.chmod(0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        read_secret(secret, "RAG_SMB__PASSWORD_FILE")
    with pytest.raises(SecretFileError, match="RAG_SMB__PASSWORD_FILE is not set"):
        read_secret(None, "RAG_SMB__PASSWORD_FILE")
    secret.write_text("\n")
    secret.chmod(0o400)
    with pytest.raises(SecretFileError, match="empty"):
        read_secret(secret, "RAG_SMB__PASSWORD_FILE")
