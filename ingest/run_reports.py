"""A file per ingestion run: what it did and each file that failed, with the reason."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

KEEP = 200  # the newest reports kept; a watch runs one pass a minute, say


def save_run_report(folder: Path, report: Mapping[str, Any], roots: Sequence[str]) -> Path:
    """Write `ingest-<UTC time>.json` in `folder` and prune the oldest beyond KEEP."""
    folder.mkdir(parents=True, exist_ok=True)
    finished = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(finished))
    path = folder / f"ingest-{stamp}-{int(finished * 1000) % 1000:03d}Z.json"
    content = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished)),
        "roots": list(roots),
        **{key: value for key, value in report.items() if key != "report_file"},
    }
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n")
    os.replace(partial, path)
    for old in sorted(folder.glob("ingest-*.json"))[:-KEEP]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return path
