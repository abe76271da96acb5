"""A live progress line on the terminal for long runs: files, pages, ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class TerminalProgress:
    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self._stream = stream
        self._width = width
        self._total = 0
        self._done = 0
        self._pages = 0
        self._started = 0.0

    def start(self, total_files: int) -> None:
        self._total = total_files
        self._started = time.monotonic()
        self._draw("")

    def advance(self, path: str, pages: int) -> None:
        self._done += 1
        self._pages += pages
        self._draw(path)

    def finish(self) -> None:
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, path: str) -> None:
        fraction = self._done / self._total if self._total else 1.0
        filled = int(fraction * self._width)
        bar = "#" * filled + "." * (self._width - filled)
        elapsed = time.monotonic() - self._started
        eta = elapsed / self._done * (self._total - self._done) if self._done else 0.0
        name = path.rsplit("/", 1)[-1][:30]
        self._stream.write(
            f"\r[{bar}] {self._done}/{self._total} files, {self._pages} pages, "
            f"ETA {int(eta) // 60}:{int(eta) % 60:02d}  {name:<30}"
        )
        self._stream.flush()
