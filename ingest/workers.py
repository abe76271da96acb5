"""Parsing in worker processes, each file under a time limit and a memory cap.

A hostile file (a decompression bomb, a PDF that sends a parser into a loop) takes down at
most its own worker: the supervisor kills a worker that runs past the time limit or whose
process tree holds more memory than the cap, fails that file with the reason, starts a new
worker and goes on with the rest.

A worker parses exactly the content whose permissions and hash the run checked
(`ParseSource`): it opens the file as the run did (`ingest.share_files`: no link followed, the
same device and inode), copies it through that handle into a private file (0600, in a 0700
folder of the pool's own) while hashing it, and parses the copy under the file's suffix; a
file whose hash is no longer the one checked fails as `CHANGED`, and the next run reads it
again. A file fetched over SMB (`ingest.smb`) is already a private copy in the run's spool
(`ParseSource.spooled`): the worker copies and checks that one instead, and removes it. Each
busy worker holds one copy at a time, removed once parsed, when its worker is
stopped, and with the pool's folder when the pool closes; the folders of pools whose process
is gone are removed when the next pool starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import multiprocessing
import os
import re
import resource
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from ingest.document import ParsedDocument
from ingest.errors import ParseError
from ingest.share_files import CHANGED_WHILE_READ, FileChanged, Identity, ShareOpener
from settings import OcrSettings

_POLL_SECONDS = 0.1
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_COPY_BLOCK = 1 << 20
POOL_PREFIX = "parsing"

CHANGED = f"{CHANGED_WHILE_READ}; run rag ingest again"

ParseResult = ParsedDocument | str  # the document, or why it could not be parsed


@dataclass(frozen=True)
class ParseSource:
    """A file to parse as the run checked it: found at `path` under the ingest `root`, the
    object with `identity` (device, inode), its content hashing to `sha256`; or, when
    `spooled`, the private copy of it the run downloaded there (a file of an SMB share)."""

    path: str
    root: str
    identity: Identity
    sha256: str
    spooled: str | None = None


def parse_or_reason(path: str, ocr: OcrSettings) -> ParseResult:
    from ingest.parsers import parse

    try:
        return parse(Path(path), ocr)
    except ParseError as exc:
        return exc.reason


def parse_checked(source: ParseSource, copy: str, ocr: OcrSettings) -> ParseResult:
    """The document in the file `source` names, parsed from a private copy at `copy` (a path
    with the file's suffix, in a private folder) of the very content the run checked; or why
    not. The copy is gone on return, and so is the spooled copy the source names."""
    try:
        try:
            sha256 = _copy_source(source, copy)
        except (FileChanged, FileNotFoundError):
            return CHANGED
        except OSError as exc:
            return f"cannot read: {exc.strerror}"
        if sha256 != source.sha256:
            return CHANGED
        result = parse_or_reason(copy, ocr)
        return result.replace(copy, source.path) if isinstance(result, str) else result
    finally:
        for leftover in (copy, source.spooled):
            if leftover is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)


def _copy_source(source: ParseSource, copy: str) -> str:
    """Copy the file the source names to `copy`; the SHA-256 of what was copied."""
    if source.spooled is not None:
        fd = os.open(source.spooled, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return _copy(fd, copy)
        finally:
            os.close(fd)
    with ShareOpener(source.root, {source.path: source.identity}) as opener, \
            opener.open(source.path) as opened:  # fmt: skip
        return _copy(opened.file.fd, copy)


def _copy(fd: int, copy: str) -> str:
    """Copy the open file to a new file `copy` (0600); the SHA-256 of what was copied."""
    digest = hashlib.sha256()
    target_fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                        | os.O_CLOEXEC, 0o600)  # fmt: skip
    buffer = bytearray(_COPY_BLOCK)
    view = memoryview(buffer)
    with open(fd, "rb", buffering=0, closefd=False) as source, open(target_fd, "wb") as target:
        while read := source.readinto(buffer):
            digest.update(view[:read])
            target.write(view[:read])
    return digest.hexdigest()


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
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        source, copy = request
        try:
            result = parse_checked(source, copy, ocr)
        except MemoryError:
            result = "out of memory while parsing"
        conn.send(result)


class Feed:
    """Files for a running pool, handed over from another thread; closed when none remain."""

    def __init__(self, sources: Iterable[ParseSource] = (), closed: bool = False) -> None:
        self._sources = deque(sources)
        self._closed = closed
        self.cancelled = False
        self._lock = threading.Lock()

    def put(self, source: ParseSource) -> None:
        with self._lock:
            self._sources.append(source)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def cancel(self) -> None:
        """No more files, and the pool stops parsing those under way."""
        with self._lock:
            self._closed = self.cancelled = True
            self._sources.clear()

    def take(self) -> ParseSource | None:
        with self._lock:
            return self._sources.popleft() if self._sources else None

    def exhausted(self) -> bool:
        with self._lock:
            return self._closed and not self._sources


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    source: ParseSource | None = None
    copy: str | None = None
    started: float = 0.0


class ParserPool:
    """`parse(sources)` yields (path, result) as files finish, in completion order."""

    def __init__(
        self,
        workers: int,
        ocr: OcrSettings,
        timeout_seconds: float,
        memory_mb: int,
        scratch: Path | None = None,
    ) -> None:
        """`scratch`: where the pool makes its private folder for the copies it parses (the
        system's temporary folder when None)."""
        self._size = max(1, workers)
        self._scratch = scratch
        self._folder: str | None = None
        self._copies = itertools.count()
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

    def parse(
        self, sources: Iterable[ParseSource] | Feed
    ) -> Generator[tuple[str, ParseResult], None, None]:
        """Parse the files; a Feed may still be given files from another thread meanwhile."""
        feed = sources if isinstance(sources, Feed) else Feed(sources, closed=True)
        try:
            while not feed.cancelled and (
                not feed.exhausted() or any(w.source for w in self._workers)
            ):
                self._assign(feed)
                if not any(w.source for w in self._workers):
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
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _assign(self, feed: Feed) -> None:
        idle = [w for w in self._workers if w.source is None]
        while True:
            if not idle and len(self._workers) >= self._size:
                return
            source = feed.take()
            if source is None:
                return
            if idle:
                worker = idle.pop()
            else:
                worker = self._spawn()
                self._workers.append(worker)
            worker.source = source
            worker.copy = os.path.join(
                self._private_folder(), f"{next(self._copies)}{Path(source.path).suffix}"
            )
            worker.started = time.monotonic()
            worker.conn.send((source, worker.copy))

    def _private_folder(self) -> str:
        if self._folder is None:
            parent = self._scratch or Path(tempfile.gettempdir())
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            remove_abandoned_folders(parent, POOL_PREFIX)
            self._folder = tempfile.mkdtemp(prefix=private_folder_prefix(POOL_PREFIX), dir=parent)
        return self._folder

    def _done(self, worker: _Worker) -> None:
        """The worker's file is settled: its copy goes (a stopped worker leaves it)."""
        if worker.copy is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(worker.copy)
        worker.source = worker.copy = None

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, args=(child, self._ocr, self._address_space), daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _collect(self) -> Iterator[tuple[str, ParseResult]]:
        busy = {w.conn: w for w in self._workers if w.source is not None}
        for conn in wait(list(busy), timeout=_POLL_SECONDS):
            worker = busy[conn]  # type: ignore[index]
            assert worker.source is not None
            path = worker.source.path
            try:
                result: ParseResult = worker.conn.recv()
            except (EOFError, OSError):
                result = self._died(worker)
            else:
                self._done(worker)
            yield path, result
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.source is None:
                continue
            path = worker.source.path
            if now - worker.started > self._timeout:
                self._replace(worker)
                yield path, f"timed out after {self._timeout:.0f}s (the parser was stopped)"
            elif tree_memory(worker.process.pid) > self._memory_bytes:
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
        self._done(worker)
        self._workers.remove(worker)


def private_folder_prefix(prefix: str) -> str:
    """The start of the name of a private folder (a pool's, a spool's) of this process:
    `prefix-PID.START-`, START being when the process started (in clock ticks since boot), so
    that a later process with the same PID (a container's PID 1 after a restart) does not pass
    for the one that made the folder."""
    return f"{prefix}-{os.getpid()}.{_started(os.getpid())}-"


def remove_abandoned_folders(parent: Path, prefix: str) -> None:
    """Remove the private folders named by `private_folder_prefix` (or `prefix-PID-`, as
    before) whose process is gone (a run killed outright)."""
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)(?:\.(\d+))?-")
    for entry in parent.iterdir():
        found = pattern.match(entry.name)
        if found is None or not entry.is_dir() or entry.is_symlink():
            continue
        pid = int(found[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
            continue
        except PermissionError:
            continue  # a live process of another account
        if found[2] is not None and found[2] != _started(pid):
            shutil.rmtree(entry, ignore_errors=True)  # another process has that PID now


def _started(pid: int) -> str:
    """When the process started, in clock ticks since boot (/proc's `starttime`); "0" where
    /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[-1].split()[19]


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
