"""Ingestion runs as use cases: one run in this process, or one started in the background
(from the Admin page: the page may be closed while it runs), each recorded in the audit log
once, as the actor's who started it.

The background run is this module run as a program (`python -m appliance.ingest_runs`): it
keeps its progress in a file the page reads and writes its report as the CLI's `--json` does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.actor import Actor
from appliance.audit import AuditLog, build_audit
from ingest.pipeline import IngestReport, Progress
from settings import PROJECT_ROOT, Settings, enforce_offline, protect_state


def run_ingestion(
    settings: Settings,
    actor: Actor,
    roots: Sequence[str],
    *,
    audit: AuditLog | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    retry_failed: bool = False,
    rebuild: bool = False,
) -> IngestReport:
    """Sync the index with the files under `roots` (`ingest.pipeline.Ingestor.run`)."""
    from ingest.build import build_ingestor

    report = build_ingestor(settings).run(roots, progress, workers, retry_failed, rebuild)
    detail = {
        "roots": list(roots), "files_seen": report.files_seen, "indexed": report.indexed,
        "updated": report.updated, "deleted": report.deleted, "failed": len(report.failed),
    }  # fmt: skip
    (audit or build_audit(settings)).record(
        actor.name, "ingest", {**detail, **actor.audit_detail()}
    )
    return report


def start_ingestion(
    actor: Actor, share: str, progress_file: Path, log_file: Path
) -> subprocess.Popen[bytes]:
    """Run `share`'s ingestion in a process of its own, which outlives the caller's request."""
    progress_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as out:
        return subprocess.Popen(  # noqa: S603 (our own module, no shell)
            [sys.executable, "-m", "appliance.ingest_runs", share, "--by", actor.name,
             "--via", actor.channel, "--progress-file", str(progress_file)],
            cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    from ingest.progress_file import FileProgress

    parser = argparse.ArgumentParser(description="One ingestion run, in the background.")
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--by", required=True, help="who started it, for the audit log")
    parser.add_argument("--via", default="ui", choices=("cli", "ui", "api", "mcp"))
    parser.add_argument("--progress-file", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = Settings()
    protect_state(settings.data_dir)
    actor = Actor(args.by, Actor.operator().scope, args.via, admin=True)
    report = run_ingestion(settings, actor, args.roots, progress=FileProgress(args.progress_file))
    print(json.dumps(report.as_json(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    enforce_offline()
    sys.exit(main())
