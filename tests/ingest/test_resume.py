"""kill -9 in the middle of a run, then run again: the index equals that of a clean run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from ingest.ledger import Ledger
from retrieval.access import Scope
from retrieval.build import build_store
from retrieval.store import SearchQuery
from tests.conftest import RAG, SAMPLE_SHARE, make_settings


def make_share(root: Path) -> Path:
    for i in range(12):
        folder = root / f"dept-{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note-{i:02d}.md").write_text(
            f"# Note {i}\n\n## Rooms\n\nMeeting room {i} seats {i + 4} people.\n"
        )
    for i in range(3):
        shutil.copy(SAMPLE_SHARE / "finance" / "board-minutes-2026-03.pdf", root / f"scan-{i}.pdf")
    return root


def env_for(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(data_dir)
    return env


def ingest(share: Path, data_dir: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(RAG), "ingest", str(share), "--workers", "1", "--json"],
        env=env_for(data_dir),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def indexed_rows(data_dir: Path) -> int:
    try:
        with sqlite3.connect(data_dir / "ledger.sqlite3", timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM files WHERE status = 'indexed'").fetchone()[0]
    except sqlite3.Error:
        return 0


def kill_mid_run(
    options: list[str], share: Path, env: dict[str, str], data_dir: Path, after_rows: int
) -> None:
    """Start `rag ingest`, and SIGKILL its whole process group once `after_rows` files are
    indexed. Small write batches make the kill land between (or inside) the run's writes."""
    process = subprocess.Popen(
        [str(RAG), "ingest", str(share), *options, "--json"],
        env={**env, "RAG_INGEST__BATCH_CHUNKS": "2"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while (indexed_rows(data_dir) < after_rows and process.poll() is None
           and time.monotonic() < deadline):  # fmt: skip
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def snapshot(data_dir: Path, embedder: Any) -> tuple[set[tuple[Any, ...]], dict[str, int]]:
    settings = make_settings(data_dir)
    store = build_store(settings)
    hits = store.search(SearchQuery("room", embedder.embed_query("room")), Scope.operator(), 10_000)
    chunks = {(h.chunk.id, h.chunk.path, h.chunk.page, h.chunk.text) for h in hits}
    assert len(chunks) == store.count()
    ledger = Ledger(settings.ledger_path)
    totals = ledger.totals()
    with sqlite3.connect(settings.ledger_path) as db:
        rows = db.execute("SELECT doc_id, chunks FROM files WHERE status = 'indexed'").fetchall()
    for doc_id, count in rows:  # no file marked indexed whose chunks are missing
        assert store.count(doc_id) == count
    assert sum(count for _, count in rows) == store.count()  # and no orphaned chunks
    ledger.close()
    return chunks, totals


def test_a_killed_run_resumes_to_the_index_of_a_clean_run(tmp_path: Path, embedder: Any) -> None:
    share = make_share(tmp_path / "share")
    clean = tmp_path / "clean"
    ingest(share, clean)

    killed = tmp_path / "killed"
    kill_mid_run(["--workers", "1"], share, env_for(killed), killed, after_rows=5)
    assert 0 < indexed_rows(killed) < 15

    report = ingest(share, killed)
    assert report["failed"] == []
    assert report["indexed"] + report["unchanged"] + report["updated"] == 15
    assert snapshot(killed, embedder) == snapshot(clean, embedder)
