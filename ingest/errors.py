"""Errors of the ingest package.

IngestError
├── BadIngestRoot    a path given to `rag ingest` doesn't exist or isn't a folder or file
└── ParseError       one file could not be turned into text (the run goes on)
    └── OcrError     Tesseract failed on an image or a page
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error raised by the ingest package."""


class BadIngestRoot(IngestError):
    pass


class ParseError(IngestError):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class OcrError(ParseError):
    pass
