"""`rag ingest` on a generated share of a couple of hundred files with nested folders,
hostile files and links: every entry's fate is reported, a re-run after changes reports
exactly those changes, and a run killed with SIGKILL resumes to the index of a clean run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.crawler import storable
from tests.conftest import RAG
from tests.ingest import hostile_share
from tests.ingest.test_resume import indexed_rows, kill_mid_run, snapshot

# A parser process holds about 800 MB once it has read a PDF (unstructured's PDF partitioning
# brings in torch), more after OCR; 1.5 GB leaves room for that and still stops the 1.5 GB
# zip bomb long before the timeout.
LIMITS = {"RAG_INGEST__FILE_TIMEOUT_SECONDS": "120", "RAG_INGEST__WORKER_MEMORY_MB": "1536"}


def env_for(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return {**env, **LIMITS, "RAG_DATA_DIR": str(data_dir)}


def ingest(share: Path, data_dir: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(RAG), "ingest", str(share), "--workers", "2", "--json"],
        env=env_for(data_dir), capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ledger_rows(data_dir: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(data_dir / "ledger.sqlite3") as db:
        return {path: (status, error) for path, status, error in
                db.execute("SELECT path, status, error FROM files")}  # fmt: skip


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, hostile_share.Fate]]:
    root = tmp_path_factory.mktemp("hostile") / "share"
    return root, hostile_share.build(root)


@pytest.fixture(scope="module")
def first_run(
    share: tuple[Path, dict[str, hostile_share.Fate]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], float]:
    data_dir = tmp_path_factory.mktemp("hostile-data")
    started = time.monotonic()
    report = ingest(share[0], data_dir)
    return data_dir, report, time.monotonic() - started


def test_the_first_run_reports_the_fate_of_every_entry(
    share: tuple[Path, dict[str, hostile_share.Fate]], first_run: tuple[Path, dict[str, Any], float]
) -> None:
    root, fates = share
    data_dir, report, seconds = first_run
    rows = ledger_rows(data_dir)
    entries = {storable(os.fsdecode(entry)) for entry in hostile_share.entries(root)}
    assert len(entries) > 200
    assert set(rows) == entries  # every file, link and special file has a row
    assert {status for status, _ in rows.values()} == {"indexed", "failed", "skipped"}
    for path, (status, error) in rows.items():
        if status != "indexed":
            assert error and "\n" not in error and len(error) < 400, (path, error)
    for relative, (status, reason) in fates.items():
        got_status, error = rows[str(root / relative)]
        assert got_status == status, (relative, error)
        if reason:
            assert reason in (error or ""), (relative, error)
    assert rows[str(root / "hostile/names") + "/caf\\xe9 latin-1 name.md"][0] == "failed"

    failed = {f["path"]: f["error"] for f in report["failed"]}
    assert failed == {p: e for p, (s, e) in rows.items() if s == "failed"}
    assert report["skipped"] == sum(s == "skipped" for s, _ in rows.values())
    assert report["indexed"] == sum(s == "indexed" for s, _ in rows.values())
    assert report["files_seen"] == report["indexed"] + len(failed) + report["skipped"] - sum(
        os.path.islink(p) or not os.path.isfile(p) for p in rows if os.path.lexists(p)
    )
    saved = json.loads(Path(report["report_file"]).read_text())
    assert {f["path"] for f in saved["failed"]} == set(failed)
    mail = str(root / "mail/dredging.eml")
    assert [w["path"] for w in report["warnings"]] == [mail]
    assert "attachment 'broken.pdf' failed" in report["warnings"][0]["warning"]
    # The bombs end within the limits, not after the 120 s timeout.
    assert seconds < 400


def test_a_run_killed_with_sigkill_resumes_to_the_index_of_the_clean_run(
    share: tuple[Path, dict[str, hostile_share.Fate]],
    first_run: tuple[Path, dict[str, Any], float],
    tmp_path_factory: pytest.TempPathFactory,
    embedder: Any,
) -> None:
    root, _ = share
    killed = tmp_path_factory.mktemp("killed-data")
    kill_mid_run(["--workers", "2"], root, env_for(killed), killed, after_rows=30)
    assert 0 < indexed_rows(killed) < first_run[1]["indexed"]

    resumed = ingest(root, killed)
    assert resumed["failed"] == [] or all(
        f["path"] in {p for p, (s, _) in ledger_rows(first_run[0]).items() if s == "failed"}
        for f in resumed["failed"]
    )
    assert snapshot(killed, embedder) == snapshot(first_run[0], embedder)
    assert ledger_rows(killed) == ledger_rows(first_run[0])


def test_a_rerun_after_changes_reports_exactly_those_changes(
    share: tuple[Path, dict[str, hostile_share.Fate]],
    first_run: tuple[Path, dict[str, Any], float],
) -> None:
    root, fates = share
    data_dir, first, _ = first_run
    for n in (0, 1, 2):  # a .md, a .txt, an .html
        with (root / hostile_share.ordinary_path(n)).open("a") as handle:
            handle.write("\nAmended: the mooring fee rises to EUR 77.\n")
    (root / hostile_share.ordinary_path(3)).unlink()  # a .csv
    (root / hostile_share.ordinary_path(4)).unlink()  # a .docx
    (root / "dept-0/new-memo.md").write_text("# New memo\n\nThe ferry leaves at 06:10.\n")
    (root / "dept-1/new-notice.txt").write_text("Berth 9 is closed for dredging.\n")
    (root / hostile_share.ordinary_path(5)).rename(root / "dept-4/file-005-moved.pdf")
    touched = root / hostile_share.ordinary_path(6)
    os.utime(touched, (time.time() + 60, time.time() + 60))

    report = ingest(root, data_dir)
    counts = {key: report[key] for key in ("indexed", "updated", "deleted")}
    assert counts == {"indexed": 3, "updated": 3, "deleted": 3}
    assert report["failed"] == []
    assert report["still_failed"] == len(first["failed"])
    assert report["files_seen"] == first["files_seen"]
    assert report["skipped"] == first["skipped"]
    unsupported = sum(reason == "unsupported" for _, reason in fates.values())
    assert report["unchanged"] == first["files_seen"] - 6 - unsupported
    assert report["pages"] == 5  # the moved file took its chunks along: nothing re-read
