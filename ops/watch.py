"""`rag ingest --watch`: re-scan on an interval (polling; inotify misses network shares)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

from ingest.pipeline import Ingestor


def watch(ingestor: Ingestor, roots: Sequence[str], interval: float, workers: int | None) -> None:
    """One JSON summary line per pass on stderr, until interrupted (Ctrl-C, SIGINT)."""
    try:
        while True:
            report = ingestor.run(roots, workers=workers).as_json()
            summary: dict[str, object] = dict(report)
            summary["failed"] = len(report["failed"])  # type: ignore[arg-type]
            summary["warnings"] = len(report["warnings"])  # type: ignore[arg-type]
            print(json.dumps({"event": "ingest_pass", **summary}), file=sys.stderr, flush=True)
            time.sleep(max(interval, 1.0))
    except KeyboardInterrupt:
        return
