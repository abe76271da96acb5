"""`rag ingest --watch`: re-scan on an interval (polling; inotify misses network shares)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ingest.errors import IngestError
from ingest.pipeline import Ingestor, NoProgress, Progress
from ingest.progress_file import FileProgress
from ops.heartbeat import Heartbeat


class _BeatingProgress:
    """Passes a run's progress on, beating the heartbeat as each file is done."""

    def __init__(self, progress: Progress, heartbeat: Heartbeat) -> None:
        self._progress = progress
        self._heartbeat = heartbeat

    def start(self, total_files: int) -> None:
        self._heartbeat.beat()
        self._progress.start(total_files)

    def advance(self, path: str, pages: int, chunks: int) -> None:
        self._heartbeat.beat()
        self._progress.advance(path, pages, chunks)

    def finish(self) -> None:
        self._heartbeat.beat()
        self._progress.finish()


def watch(
    ingestor: Ingestor,
    roots: Sequence[str],
    interval: float,
    workers: int | None,
    progress_file: Path | None = None,
    heartbeat_file: Path | None = None,
) -> None:
    """One JSON summary line per pass on stderr, until interrupted (Ctrl-C, SIGINT).

    With `progress_file`, each pass keeps its progress there (files found, files done), which
    `rag metrics` reports as the ingestion queue. With `heartbeat_file`, the loop beats it
    (ops.heartbeat) as each file is done and every few seconds between passes, so a check of
    its age tells a dead or stuck watcher."""
    progress: FileProgress | None = None
    heartbeat = Heartbeat(heartbeat_file) if heartbeat_file is not None else None
    try:
        while True:
            if heartbeat is not None:
                heartbeat.beat()
            progress = FileProgress(progress_file) if progress_file is not None else None
            reported: Progress | None = progress
            if heartbeat is not None:
                reported = _BeatingProgress(progress or NoProgress(), heartbeat)
            try:
                report = ingestor.run(roots, reported, workers=workers).as_json()
            except (IngestError, OSError) as error:
                # A share that cannot be reached now (a file server restarting, a folder not
                # mounted yet) is tried again at the next pass; the index keeps what it had.
                failed = {"event": "ingest_pass_failed", "error": str(error)}
                print(json.dumps(failed), file=sys.stderr, flush=True)
            else:
                summary: dict[str, object] = dict(report)
                summary["failed"] = len(report["failed"])  # type: ignore[arg-type]
                summary["warnings"] = len(report["warnings"])  # type: ignore[arg-type]
                event = {"event": "ingest_pass", **summary}
                print(json.dumps(event), file=sys.stderr, flush=True)
            if heartbeat is not None:
                heartbeat.wait(max(interval, 1.0))
            else:
                time.sleep(max(interval, 1.0))
    except KeyboardInterrupt:
        if progress is not None:
            progress.finish()  # an interrupted pass leaves no queue behind
        return
