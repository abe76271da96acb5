"""A live progress line on the terminal for long runs: files, pages, chunks, speed, ETA."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO


class TerminalProgress:
    def __init__(self, stream: TextIO = sys.stderr, bar_width: int = 24) -> None:
        self._stream = stream
        self._bar_width = bar_width
        self._total = 0
        self._done = 0
        self._pages = 0
        self._chunks = 0
        self._started = 0.0
        self._drawn = 0.0

    def start(self, total_files: int) -> None:
        self._total = total_files
        self._started = time.monotonic()
        self._draw("", force=True)

    def advance(self, path: str, pages: int, chunks: int) -> None:
        self._done += 1
        self._pages += pages
        self._chunks += chunks
        self._draw(path, force=self._done == self._total)

    def finish(self) -> None:
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, path: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return  # a share of tiny unchanged files would otherwise flood the terminal
        self._drawn = now
        fraction = self._done / self._total if self._total else 1.0
        filled = int(fraction * self._bar_width)
        bar = "#" * filled + "." * (self._bar_width - filled)
        elapsed = max(now - self._started, 1e-6)
        rate = self._done / elapsed
        eta = (self._total - self._done) / rate if self._done else 0.0
        line = (
            f"[{bar}] {self._done}/{self._total} files, {self._pages} pages, "
            f"{self._chunks} chunks, {rate:.1f} files/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        )
        name = path.rsplit("/", 1)[-1].replace("\n", " ")
        width = shutil.get_terminal_size((100, 20)).columns
        room = width - len(line) - 3
        if room > 8:
            line += f"  {name[:room]}"
        self._stream.write("\r" + line[: width - 1].ljust(width - 1))
        self._stream.flush()


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
