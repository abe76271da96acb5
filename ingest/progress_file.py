"""An ingestion run's progress kept in a file, for a watcher in another process."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class FileProgress:
    """Progress written as one JSON object to a file, replaced atomically at most every half
    second, for a watcher in another process (the UI's admin page):
    `{"state": "running"|"finished", "done", "total", "pages", "chunks", "path", "updated"}`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._state: dict[str, object] = {
            "state": "running", "done": 0, "total": 0, "pages": 0, "chunks": 0, "path": "",
        }  # fmt: skip
        self._written = 0.0

    def start(self, total_files: int) -> None:
        self._state["total"] = total_files
        self._write(force=True)

    def advance(self, path: str, pages: int, chunks: int) -> None:
        state = self._state
        state["done"] = int(str(state["done"])) + 1
        state["pages"] = int(str(state["pages"])) + pages
        state["chunks"] = int(str(state["chunks"])) + chunks
        state["path"] = path
        self._write()

    def finish(self) -> None:
        self._state["state"] = "finished"
        self._write(force=True)

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < 0.5:
            return
        self._written = now
        self._path.parent.mkdir(parents=True, exist_ok=True)
        partial = self._path.with_suffix(".partial")
        partial.write_text(json.dumps({**self._state, "updated": time.time()}))
        os.replace(partial, self._path)
