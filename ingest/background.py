"""Parsing in the background of an ingestion run."""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any, Generic, Protocol, TypeVar

from ingest.workers import Feed, ParseResult, ParserPool, ParseSource


class _Job(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def source(self) -> ParseSource: ...


J = TypeVar("J", bound=_Job)


class BackgroundParsing(Generic[J]):
    """The parser pool, supervised from a thread: files are submitted while the run still
    checks the rest, and workers get their next file at once while the run's own thread
    embeds and writes. The queue of results between them bounds what waits in memory."""

    def __init__(self, pool: ParserPool, workers: int) -> None:
        self._pool = pool
        self._feed = Feed()
        self._jobs: dict[str, J] = {}
        self._results: queue.Queue[Any] = queue.Queue(maxsize=4 * workers)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._submitted_all = False
        self._pool_done = False

    def submit(self, job: J) -> None:
        self._jobs[job.path] = job
        self._feed.put(job.source)
        if self._thread is None:
            self._thread = threading.Thread(target=self._supervise, name="parsers", daemon=True)
            self._thread.start()

    def done_submitting(self) -> None:
        self._submitted_all = True
        self._feed.close()

    @property
    def waiting(self) -> int:
        """Files submitted whose result has not been taken yet."""
        return len(self._jobs)

    @property
    def finished(self) -> bool:
        return self._submitted_all and (self._thread is None or self._pool_done)

    def ready(self, wait: float) -> list[tuple[J, ParseResult]]:
        """The results in hand, after waiting up to `wait` seconds for a first one."""
        found: list[tuple[J, ParseResult]] = []
        while not self._pool_done:
            try:
                if wait and not found:
                    item = self._results.get(timeout=wait)
                else:
                    item = self._results.get_nowait()
            except queue.Empty:
                break
            if item is _POOL_DONE:
                self._pool_done = True
            elif isinstance(item, BaseException):
                raise item
            else:
                path, result = item
                found.append((self._jobs.pop(path), result))
        return found

    def close(self) -> None:
        self._stop.set()
        self._feed.cancel()
        if self._thread is not None:
            self._thread.join()

    def _supervise(self) -> None:
        outcome: object = _POOL_DONE
        try:
            with contextlib.closing(self._pool.parse(self._feed)) as parsed:
                for item in parsed:
                    if not self._hand_over(item):
                        return
        except BaseException as exc:  # handed to the run's thread, raised there
            outcome = exc
        self._hand_over(outcome)

    def _hand_over(self, item: object) -> bool:
        """Queue an item, retrying each second; False when the run stopped listening."""
        while not self._stop.is_set():
            try:
                self._results.put(item, timeout=1.0)
                return True
            except queue.Full:
                continue
        return False


_POOL_DONE = object()
