"""`rag ingest` and `rag erase`: what goes into the index, and what leaves it."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from appliance.actor import Actor
from ops.cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    Result,
    UsageError,
    add_command,
    appliance,
)
from settings import Settings

# `rag ingest --watch` keeps its pass's progress here; `rag metrics` reads the queue from it.
WATCH_PROGRESS = "ingest-watch.progress.json"
# ... and beats this file (ops.heartbeat), which the ingest service's healthcheck reads.
WATCH_HEARTBEAT = "ingest-watch.heartbeat"
_FAILURES_SHOWN = 20


def ingest(args: argparse.Namespace, settings: Settings) -> Result:
    from ingest.errors import BadIngestRoot
    from ingest.pipeline import check_roots
    from ingest.progress_file import FileProgress
    from ops.progress import TerminalProgress

    try:
        check_roots(args.paths)
    except BadIngestRoot as exc:
        raise UsageError(str(exc)) from exc
    progress: TerminalProgress | FileProgress | None = None
    if args.progress_file is not None:
        progress = FileProgress(args.progress_file)
    elif not args.json and sys.stderr.isatty():
        progress = TerminalProgress()
    workers = args.workers
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.watch is not None and args.rebuild:
        raise UsageError("--rebuild reads everything once; run it without --watch first")
    if args.watch is None:
        report = appliance(settings).ingest(
            Actor.operator(), args.paths, progress=progress, workers=workers,
            retry_failed=args.retry_failed, rebuild=args.rebuild,
        )  # fmt: skip
        return report.as_json()
    from ingest.build import build_ingestor
    from ops.watch import watch

    progress_file = settings.run_dir / WATCH_PROGRESS
    heartbeat_file = settings.run_dir / WATCH_HEARTBEAT
    watch(build_ingestor(settings), args.paths, args.watch, workers, progress_file, heartbeat_file)
    return {}


def print_ingest(result: Result) -> None:
    if not result:
        return
    failed = result["failed"]
    print(
        f"{result['files_seen']} files: {result['indexed']} new, {result['updated']} updated, "
        f"{result['unchanged']} unchanged, {result['deleted']} deleted, "
        f"{result['skipped']} skipped, {len(failed)} failed; "
        f"{result['pages']} pages, {result['chunks']} chunks in {result['seconds']:.1f}s"
    )
    for failure in failed[:_FAILURES_SHOWN]:
        print(f"  failed: {failure['path']}: {failure['error']}")
    if len(failed) > _FAILURES_SHOWN:
        print(f"  ... and {len(failed) - _FAILURES_SHOWN} more")
    if result["warnings"]:
        print(f"  {len(result['warnings'])} warnings (parts of files that were not read)")
    if failed or result["warnings"]:
        print(f"  every failure and warning, with its reason: {result['report_file']}")
    if result["still_failed"]:
        print(f"  {result['still_failed']} unchanged files failed in an earlier run (see "
              "`rag status`); `rag ingest --retry-failed PATH` tries them again")  # fmt: skip


def erase(args: argparse.Namespace, settings: Settings) -> Result:
    if (args.path is None) == (args.doc_id is None):
        raise UsageError("give the PATH of the file to erase, or --doc-id ID, not both")
    actor = replace(Actor.operator(), name=args.by)
    return appliance(settings).erase(actor, path=args.path, doc_id=args.doc_id).as_json()


def print_erase(result: Result) -> None:
    copies = f" and {len(result['copies'])} identical copies" if result["copies"] else ""
    print(
        f"erased {result['path']}{copies}: {result['chunks_removed']} chunks removed, "
        f"{result['remaining']} remaining; delete or move the file at the source"
    )


def erase_status(result: Result) -> int:
    return EXIT_FAILED if result["remaining"] else EXIT_OK  # run it again to finish


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = add_command(commands, "ingest", common, "index files and folders (a share)",
                    ingest, print_ingest)  # fmt: skip
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "--workers", type=int, default=None, help="parser processes (default: one per core)"
    )
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                   help="re-scan on this interval until interrupted")  # fmt: skip
    p.add_argument("--rebuild", action="store_true",
                   help="drop the whole index and read every file again (after an upgrade "
                   "that asks for it); give every root the index holds")  # fmt: skip
    p.add_argument("--retry-failed", action="store_true",
                   help="parse again the files that failed before, changed or not")  # fmt: skip
    p.add_argument("--progress-file", type=Path, default=None, metavar="FILE",
                   help="keep the run's progress in FILE as JSON, for a watcher")  # fmt: skip

    p = add_command(commands, "erase", common,
                    "erase a document from the index, page pictures, conversations and "
                    "ratings; it is not indexed again while unchanged",
                    erase, print_erase, erase_status)  # fmt: skip
    p.add_argument("path", nargs="?", default=None, metavar="PATH",
                   help="the file's path, as the Library or `rag search` shows it")  # fmt: skip
    p.add_argument("--doc-id", default=None, metavar="ID", help="the document id instead")
    p.add_argument("--by", default="operator", metavar="NAME",
                   help="who asked for the erasure, for the audit log")  # fmt: skip
