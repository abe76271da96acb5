"""Parsing in worker processes, each file under a time limit and a memory cap.

A hostile file (a decompression bomb, a PDF that sends a parser into a loop) takes down at
most its own worker: the supervisor kills a worker that runs past the time limit or whose
process tree holds more memory than the cap, fails that file with the reason, starts a new
worker and goes on with the rest.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from ingest.document import ParsedDocument
from ingest.errors import ParseError
from settings import OcrSettings

_POLL_SECONDS = 0.1
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

ParseResult = ParsedDocument | str  # the document, or why it could not be parsed


def parse_or_reason(path: str, ocr: OcrSettings) -> ParseResult:
    from ingest.parsers import parse

    try:
        return parse(Path(path), ocr)
    except ParseError as exc:
        return exc.reason


def _worker_main(conn: Connection, ocr: OcrSettings, address_space_bytes: int) -> None:
    # Ctrl-C reaches the whole process group; the supervisor decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One thread per worker, Tesseract's included: files and pages run side by side instead.
    # Only here: the supervising process embeds with every core.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    # A hard ceiling behind the supervisor's RSS check, for allocations faster than its poll.
    resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
    while True:
        try:
            path = conn.recv()
        except EOFError:
            return
        if path is None:
            return
        try:
            result = parse_or_reason(path, ocr)
        except MemoryError:
            result = "out of memory while parsing"
        conn.send(result)


class Feed:
    """Paths for a running pool, handed over from another thread; closed when none remain."""

    def __init__(self, paths: Iterable[str] = (), closed: bool = False) -> None:
        self._paths = deque(paths)
        self._closed = closed
        self.cancelled = False
        self._lock = threading.Lock()

    def put(self, path: str) -> None:
        with self._lock:
            self._paths.append(path)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def cancel(self) -> None:
        """No more paths, and the pool stops parsing those under way."""
        with self._lock:
            self._closed = self.cancelled = True
            self._paths.clear()

    def take(self) -> str | None:
        with self._lock:
            return self._paths.popleft() if self._paths else None

    def exhausted(self) -> bool:
        with self._lock:
            return self._closed and not self._paths


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    path: str | None = None
    started: float = 0.0


class ParserPool:
    """`parse(paths)` yields (path, result) as files finish, in completion order."""

    def __init__(
        self, workers: int, ocr: OcrSettings, timeout_seconds: float, memory_mb: int
    ) -> None:
        self._size = max(1, workers)
        self._ocr = ocr
        self._timeout = timeout_seconds
        self._memory_bytes = memory_mb * 1024 * 1024
        # Importing the parsers (torch, onnxruntime) maps far more address space than it
        # uses; the ceiling leaves room for that and still stops a runaway allocation.
        self._address_space = 2 * self._memory_bytes + 4 * 1024**3
        # Workers start clean (not forked from this process, which runs torch's threads),
        # from a server that has the parsers imported already, so a replacement is quick.
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["ingest.parsers", "ingest.workers"])
        self._workers: list[_Worker] = []

    def parse(self, paths: Iterable[str] | Feed) -> Generator[tuple[str, ParseResult], None, None]:
        """Parse the paths; a Feed may still be given paths from another thread meanwhile."""
        feed = paths if isinstance(paths, Feed) else Feed(paths, closed=True)
        try:
            while not feed.cancelled and (
                not feed.exhausted() or any(w.path for w in self._workers)
            ):
                self._assign(feed)
                if not any(w.path for w in self._workers):
                    time.sleep(_POLL_SECONDS)  # waiting for the feed
                    continue
                yield from self._collect()
        finally:
            self.close()

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                worker.conn.send(None)
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._workers = []

    def _assign(self, feed: Feed) -> None:
        idle = [w for w in self._workers if w.path is None]
        while True:
            if not idle and len(self._workers) >= self._size:
                return
            path = feed.take()
            if path is None:
                return
            if idle:
                worker = idle.pop()
            else:
                worker = self._spawn()
                self._workers.append(worker)
            worker.path = path
            worker.started = time.monotonic()
            worker.conn.send(path)

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(child, self._ocr, self._address_space), daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _collect(self) -> Iterator[tuple[str, ParseResult]]:
        busy = {w.conn: w for w in self._workers if w.path is not None}
        for conn in wait(list(busy), timeout=_POLL_SECONDS):
            worker = busy[conn]  # type: ignore[index]
            path = worker.path
            assert path is not None
            try:
                result: ParseResult = worker.conn.recv()
            except (EOFError, OSError):
                result = self._died(worker)
            else:
                worker.path = None
            yield path, result
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.path is None:
                continue
            if now - worker.started > self._timeout:
                path = worker.path
                self._replace(worker)
                yield path, f"timed out after {self._timeout:.0f}s (the parser was stopped)"
            elif tree_memory(worker.process.pid) > self._memory_bytes:
                path = worker.path
                self._replace(worker)
                cap = self._memory_bytes // (1024 * 1024)
                yield path, f"used more than {cap} MB while parsing (the parser was stopped)"

    def _died(self, worker: _Worker) -> str:
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        self._replace(worker)
        if code is not None and code < 0:
            return f"the parser process was killed by signal {-code} (out of memory?)"
        return "the parser process died"

    def _replace(self, worker: _Worker) -> None:
        if worker.process.pid is not None:
            _kill_tree(worker.process.pid)
        worker.process.join(timeout=5)
        worker.conn.close()
        self._workers.remove(worker)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return []


def _tree(pid: int | None) -> list[int]:
    if pid is None:
        return []
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(_children(current))
    return found


def tree_memory(pid: int | None) -> int:
    """Memory of a process and its children (OCR runs Tesseract as a child), in bytes: the
    process's resident size, and what each child holds of its own. A child just forked
    shares every page of its parent; adding resident sizes would count them twice, and a
    worker of 800 MB would look like 1.6 GB while it starts Tesseract."""
    total = 0
    for member in _tree(pid):
        try:
            total += _resident(member) if member == pid else _private(member)
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return total


def _resident(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * _PAGE_SIZE


def _private(pid: int) -> int:
    """The pages only this process maps, resident or swapped."""
    private = 0
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith(("Private_Clean:", "Private_Dirty:", "Swap:")):
                private += int(line.split()[1]) * 1024
    return private


def _kill_tree(pid: int) -> None:
    for member in reversed(_tree(pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
