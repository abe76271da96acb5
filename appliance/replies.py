"""Use-case results as JSON, the same from every entry point that prints them (the CLI's
`--json`, the HTTP API, the MCP tools)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from retrieval.models import Hit


def search_reply(hits: Sequence[Hit]) -> dict[str, Any]:
    """`{"hits": [{"path", "page", "score", "text", "doc_id", "chunk_id"}]}`, best first."""
    return {
        "hits": [
            {
                "path": hit.chunk.path,
                "page": hit.chunk.page,
                "score": round(hit.score, 4),
                "text": hit.chunk.text,
                "doc_id": hit.chunk.doc_id,
                "chunk_id": hit.chunk.id,
            }
            for hit in hits
        ]
    }
