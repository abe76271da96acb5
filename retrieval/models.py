"""The values that cross the index boundary: chunks going in, hits coming out."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

# Fixed namespace: the same document path and ordinal always give the same ids, so
# re-ingesting a file overwrites its points instead of adding new ones.
ID_NAMESPACE = uuid.UUID("6f1d9a52-3c0e-4f43-9a57-2b8f0f0e7c11")


def document_id(path: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, path))


def chunk_id(doc_id: str, ordinal: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{doc_id}:{ordinal}"))


class Chunk(BaseModel):
    """One retrievable passage of a source document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    doc_id: str
    ordinal: int = Field(ge=0)
    text: str
    path: str = Field(description="Absolute path of the source file under its ingest root.")
    page: int | None = Field(default=None, description="1-based page, or None.")
    title: str = Field(default="", description="The document's title.")
    section: str = Field(default="", description="The heading the passage sits under.")
    attachment: str = Field(
        default="",
        description="Name of the e-mail attachment the passage comes from (then `page` and "
        "`title` are the attachment's); empty for the file's own text.",
    )
    content_sha256: str
    acl: frozenset[str] = Field(description="Principals allowed to read the source file.")
    mtime: float

    def embedding_text(self) -> str:
        """What is embedded: the passage with the title and heading it belongs to."""
        context = " / ".join(part for part in (self.title, self.section) if part)
        return f"{context}\n{self.text}" if context else self.text


class Hit(BaseModel):
    """A chunk found by a search, with its similarity score (higher is closer)."""

    model_config = ConfigDict(frozen=True)

    chunk: Chunk
    score: float
