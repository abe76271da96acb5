"""The live progress bar, as an operator sees it on a terminal (a pseudo-terminal here)."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

from tests.conftest import RAG


def test_ingest_on_a_terminal_shows_a_live_progress_bar(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    for i in range(5):
        (share / f"memo-{i}.md").write_text(f"# Memo {i}\n\nThe printer on floor {i} is fixed.\n")
    (share / "broken.pdf").write_bytes(b"%PDF-1.4 nothing")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_DATA_DIR=str(tmp_path / "data"), COLUMNS="160")
    main, child = pty.openpty()
    process = subprocess.Popen(
        [str(RAG), "ingest", str(share), "--workers", "1"], env=env, stdout=child, stderr=child
    )
    os.close(child)
    output = b""
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the terminal closes when the command exits
            break
        if not data:
            break
        output += data
    os.close(main)
    assert process.wait(timeout=300) == 0
    screen = output.decode()
    frames = [frame for frame in screen.split("\r") if frame.startswith("[")]
    assert frames[0].startswith("[" + "." * 24 + "] 0/6 files")
    assert any("6/6 files, 5 pages, 5 chunks" in frame for frame in frames)
    assert all("files/s, ETA" in frame for frame in frames)
    assert "6 files: 5 new, 0 updated, 0 unchanged, 0 deleted, 0 skipped, 1 failed" in screen
    assert "failed: " + str(share / "broken.pdf") in screen
