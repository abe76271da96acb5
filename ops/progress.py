"""A live progress line on the terminal for long runs: files, pages, chunks, speed, ETA."""

from __future__ import annotations

import shutil
import sys
import time
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
