"""The values that cross the index boundary: chunks going in, hits coming out."""

from __future__ import annotations

import uuid
from pathlib import PurePath

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
    language: str = Field(
        default="", description="ISO 639-1 code of the passage's language; empty if unknown."
    )
    context: str = Field(
        default="",
        description="What the document is (its titles, the names defined in it or its "
        "folder; `ingest.context`): embedded and keyword-indexed with the passage, never "
        "shown or cited.",
    )
    content_sha256: str
    acl: frozenset[str] = Field(description="Principals allowed to read the source file.")
    mtime: float

    def embedding_text(self) -> str:
        """What is embedded and keyword-indexed: the passage under the document's place,
        title and heading, and what the document is (`context`), so "the 2025 travel
        policy" or "DORA" finds passages that don't repeat it."""
        heading = " / ".join(part for part in (self.location(), self.title, self.section) if part)
        if self.context:
            return f"{heading}\n{self.context}\n{self.text}"
        return f"{heading}\n{self.text}"

    def location(self) -> str:
        """The file's name and its two closest folders: `finance / 2025 / travel-policy`."""
        path = PurePath(self.path)
        names = [*path.parent.parts[-2:], path.stem]
        name = " / ".join(part for part in names if part not in ("", "/"))
        return f"{name} / {self.attachment}" if self.attachment else name

    @property
    def file_type(self) -> str:
        """The file's extension, lowercase and without the dot: `pdf`, `docx`."""
        return PurePath(self.path).suffix.lower().lstrip(".")


class Hit(BaseModel):
    """A chunk found by a search.

    `score` orders the hits (the fused score of retrieval/fusion.py, or the reranker's).
    `similarity` (cosine of the query and passage vectors) and `coverage` (share of the
    query's keywords in the passage) say how well the passage matches on an absolute scale:
    refusals use them.
    """

    model_config = ConfigDict(frozen=True)

    chunk: Chunk
    score: float
    similarity: float = 0.0
    coverage: float = 0.0
