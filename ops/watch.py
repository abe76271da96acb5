"""`rag ingest --watch`: re-scan on an interval (polling; inotify misses network shares)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ingest.pipeline import Ingestor
from ingest.progress_file import FileProgress


def watch(
    ingestor: Ingestor,
    roots: Sequence[str],
    interval: float,
    workers: int | None,
    progress_file: Path | None = None,
) -> None:
    """One JSON summary line per pass on stderr, until interrupted (Ctrl-C, SIGINT).

    With `progress_file`, each pass keeps its progress there (files found, files done), which
    `rag metrics` reports as the ingestion queue."""
    progress: FileProgress | None = None
    try:
        while True:
            progress = FileProgress(progress_file) if progress_file is not None else None
            report = ingestor.run(roots, progress, workers=workers).as_json()
            summary: dict[str, object] = dict(report)
            summary["failed"] = len(report["failed"])  # type: ignore[arg-type]
            summary["warnings"] = len(report["warnings"])  # type: ignore[arg-type]
            print(json.dumps({"event": "ingest_pass", **summary}), file=sys.stderr, flush=True)
            time.sleep(max(interval, 1.0))
    except KeyboardInterrupt:
        if progress is not None:
            progress.finish()  # an interrupted pass leaves no queue behind
        return
