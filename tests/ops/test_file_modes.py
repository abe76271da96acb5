"""The modes of the appliance's state, as another local account meets them: every file the real
`rag` commands create under the data folder, in a backup and in a restored data folder is its
owner's alone, whatever umask the operator's shell has; a data folder an older version left
open is closed, and its backup is private all the same."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import RAG

LOOSE_UMASK = 0o022  # a login shell's usual umask: 0644 files, 0755 folders


def rag_json(env: dict[str, str], *args: str, stdin: str = "") -> Any:
    """`rag ... --json` started from a shell whose umask lets everyone read what it creates."""
    result = subprocess.run(
        [str(RAG), *args, "--json"],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        umask=LOOSE_UMASK,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def data_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(folder)
    return env


def open_to_others(*roots: Path) -> list[str]:
    """Every folder and file under the roots (the roots too) that group or others may use."""
    found = []
    for root in roots:
        for path in [root, *root.rglob("*")]:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                found.append(f"{path} {stat.S_IMODE(mode):04o}")
    return found


def test_state_files_are_not_readable_by_other_local_accounts(
    tmp_path: Path, sample_share: Path
) -> None:
    data = tmp_path / "srv" / "data"  # created by the first command
    env = data_env(data)
    backup = tmp_path / "backups" / "nightly"
    restored = tmp_path / "restored"

    assert rag_json(env, "ingest", str(sample_share))["failed"] == []
    rag_json(env, "users", "add", "alice", "--groups", "staff", stdin="alice-password\n")
    assert rag_json(env, "search", "travel expenses hotel", "--user", "alice")["hits"]
    rag_json(env, "audit", "--limit", "5")
    rag_json(env, "status")
    rag_json(env, "backup", str(backup))
    rag_json(data_env(restored), "restore", str(backup))

    assert {p.name for p in data.iterdir()} >= {"ledger.sqlite3", "users.sqlite3", "audit.jsonl"}
    assert any(path.is_file() for path in (data / "index").rglob("*"))
    assert open_to_others(data, backup, restored) == []


def test_a_data_folder_left_open_by_an_older_version_is_closed_and_its_backup_is_private(
    tmp_path: Path,
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    (share / "drill.md").write_text("# Fire drill\n\nThe fire drill is on the first Monday.\n")
    data = tmp_path / "data"
    env = data_env(data)
    rag_json(env, "ingest", str(share))
    rag_json(env, "users", "add", "alice", stdin="alice-password\n")
    for path in [data, *data.rglob("*")]:  # as an install made before modes were kept
        path.chmod(0o755 if path.is_dir() else 0o644)
    backup = tmp_path / "backup"
    backup.mkdir(mode=0o755)
    backup.chmod(0o755)  # an empty folder the operator made for it

    rag_json(env, "backup", str(backup))

    assert open_to_others(backup) == []
    assert stat.S_IMODE(data.stat().st_mode) == 0o700  # closed when the command started
    assert open_to_others(data / "users.sqlite3")  # inside: for `rag doctor` to name
