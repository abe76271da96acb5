"""`rag backup` and `rag restore` as an operator runs them, on the real pipeline and the real
embedded index: a restore onto a fresh data folder finds the same hits; damaged backups, busy
folders and another embedding model are refused before anything changes; an erasure made
after a backup survives restoring it; a backup rewritten by whoever can write to the backups
(links, a user added and the checksums recomputed) is refused."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from appliance.audit import AuditLog
from appliance.tokens import TokenStore
from retrieval.models import document_id
from settings import Settings
from tests.conftest import SAMPLE_SHARE
from tests.ops.test_cli import assert_one_line_error, rag, rag_json

SEARCHES = (
    ("approved budget IT Modernisation Programme",),
    ("salary band senior engineers",),
    ("Procurement Office extension 4230 conflict of interest",),
    ("salary band senior engineers", "--user", "alice"),
    ("travel reimbursement meals hotel", "--user", "alice"),
)
PROCUREMENT = "finance/procurement-guidelines.pdf"


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("backup") / "share"
    for relative in ("finance/board-minutes-2026-03.pdf", PROCUREMENT,
                     "policies/travel-and-expenses.md"):  # fmt: skip
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SAMPLE_SHARE / relative, root / relative)
    (root / "hr").mkdir()
    private = root / "hr" / "salary-bands.md"
    private.write_text("# Salary bands\n\nThe salary band for senior engineers is EUR 91,000.\n")
    private.chmod(0o600)  # its owner's only: alice may not read it
    for folder in (root, *(p for p in root.iterdir() if p.is_dir())):
        folder.chmod(0o755)
    return root


def data_env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(folder)
    return env


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, share: Path) -> dict[str, str]:
    env = data_env(tmp_path_factory.mktemp("source-data"))
    report = rag_json(env, "ingest", str(share))
    assert report["indexed"] == 4 and report["failed"] == [], report
    rag_json(env, "users", "add", "alice", "--groups", "staff", stdin="alice-password\n")
    return env


def hits(env: dict[str, str], search: tuple[str, ...]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = rag_json(env, "search", *search, "--k", "5")["hits"]
    return found


@pytest.fixture(scope="module")
def before(source: dict[str, str]) -> list[list[dict[str, Any]]]:
    """The searches' hits in the source data folder, before anything else happens to it."""
    return [hits(source, search) for search in SEARCHES]


@pytest.fixture(scope="module")
def alice_token(source: dict[str, str]) -> str:
    """The secret of an API token of alice's, made in the source data folder."""
    tokens = TokenStore(Settings(data_dir=Path(source["RAG_DATA_DIR"])).tokens_path)
    try:
        return tokens.create("alice", expires_days=None, name="reporting")[1]
    finally:
        tokens.close()


@pytest.fixture(scope="module")
def backup_dir(
    tmp_path_factory: pytest.TempPathFactory,
    source: dict[str, str],
    alice_token: str,
    before: list[list[dict[str, Any]]],
) -> Path:
    folder = tmp_path_factory.mktemp("backups") / "nightly"
    result = rag_json(source, "backup", str(folder))
    assert {"dir", "files", "chunks", "documents", "seconds"} <= set(result)
    assert result["dir"] == str(folder) and result["documents"] == 4 and result["chunks"] > 0
    return folder


def manifest_of(folder: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    return manifest


def test_a_backup_holds_every_part_with_its_checksum_and_the_settings_it_needs(
    source: dict[str, str], backup_dir: Path
) -> None:
    manifest = manifest_of(backup_dir)
    names = {entry["path"] for entry in manifest["files"]}
    assert {"ledger.sqlite3", "users.sqlite3", "tokens.sqlite3", "audit.jsonl"} <= names
    assert "audit.jsonl.head" in names
    assert any(name.startswith("store/") for name in names)
    for entry in manifest["files"]:
        data = (backup_dir / entry["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
    assert manifest["settings"]["dimension"] == 384
    assert manifest["settings"]["store_engine"] == "embedded"
    assert manifest["settings"]["collection"] == "documents"
    assert manifest["appliance_version"] and manifest["created_at"]
    status = rag_json(source, "status")
    counts = manifest["counts"]
    assert (counts["documents"], counts["chunks"]) == (status["documents"], status["chunks"])
    assert counts["users"] == 1 and counts["audit_events"] >= 2
    assert manifest["audit_chain"]["ok"] and manifest["warnings"] == []
    assert manifest["audit_chain"]["sealed"] and not manifest["audit_chain"]["signed"]
    assert (backup_dir / "audit.jsonl.head").stat().st_mode & 0o777 == 0o600
    [event] = [e for e in rag_json(source, "audit")["events"] if e["action"] == "backup"]
    assert event["detail"]["dir"] == str(backup_dir)


def test_a_restore_on_a_fresh_data_folder_finds_the_same_hits(
    tmp_path: Path, backup_dir: Path, before: list[list[dict[str, Any]]], alice_token: str
) -> None:
    fresh = data_env(tmp_path / "new-host")

    restored = rag_json(fresh, "restore", str(backup_dir))

    assert {"dir", "documents", "chunks"} <= set(restored)
    assert (restored["documents"], restored["chunks"]) == (
        4,
        manifest_of(backup_dir)["counts"]["chunks"],
    )
    for search, expected in zip(SEARCHES, before, strict=True):
        after = hits(fresh, search)
        assert [h["chunk_id"] for h in after] == [h["chunk_id"] for h in expected], search
        for got, wanted in zip(after, expected, strict=True):
            assert got["score"] == pytest.approx(wanted["score"], abs=1e-6)
            assert (got["path"], got["page"], got["text"]) == (
                wanted["path"], wanted["page"], wanted["text"]
            )  # fmt: skip
    assert before[1][0]["path"].endswith("salary-bands.md")
    assert all(not h["path"].endswith("salary-bands.md") for h in before[3])
    assert [u["user"] for u in rag_json(fresh, "users", "list")["users"]] == ["alice"]
    tokens = TokenStore(Settings(data_dir=Path(fresh["RAG_DATA_DIR"])).tokens_path)
    assert (tokens.verify(alice_token).user, tokens.list()[0].name) == ("alice", "reporting")
    tokens.close()
    verified = rag_json(fresh, "audit", "--verify")
    assert verified["ok"] and verified["sealed"], verified
    actions = [e["action"] for e in rag_json(fresh, "audit", "--limit", "0")["events"]]
    assert "restore" in actions and "ingest" in actions


def test_a_changed_backup_file_is_refused_by_name_and_nothing_is_restored(
    tmp_path: Path, backup_dir: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(backup_dir, tampered)
    segment = next(e["path"] for e in manifest_of(tampered)["files"]
                   if e["path"].startswith("store/") and e["size"] > 0)  # fmt: skip
    data = bytearray((tampered / segment).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / segment).write_bytes(bytes(data))
    target = tmp_path / "data"

    result = rag(data_env(target), "restore", str(tampered))

    assert result.returncode == 1
    assert_one_line_error(result)
    assert segment in result.stderr and "SHA-256" in result.stderr
    assert not target.exists() or not any(target.iterdir())
    (tampered / "ledger.sqlite3").write_bytes(b"")
    emptied = rag(data_env(target), "restore", str(tampered))
    assert emptied.returncode == 1 and "ledger.sqlite3" in emptied.stderr


def test_a_backup_into_a_folder_that_is_not_empty_exits_2(
    tmp_path: Path, source: dict[str, str]
) -> None:
    (tmp_path / "old.txt").write_text("keep me")

    result = rag(source, "backup", str(tmp_path))

    assert result.returncode == 2
    assert_one_line_error(result)
    assert "not an empty folder" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]


def test_a_restore_over_a_data_folder_in_use_needs_force(
    source: dict[str, str], backup_dir: Path
) -> None:
    ledger = Path(source["RAG_DATA_DIR"]) / "ledger.sqlite3"
    unchanged = ledger.stat().st_mtime_ns

    result = rag(source, "restore", str(backup_dir))

    assert result.returncode == 2
    assert_one_line_error(result)
    assert "--force" in result.stderr and "empty RAG_DATA_DIR" in result.stderr
    assert ledger.stat().st_mtime_ns == unchanged


def test_a_backup_of_another_embedding_dimension_is_refused(
    tmp_path: Path, backup_dir: Path
) -> None:
    other = tmp_path / "other-model"
    shutil.copytree(backup_dir, other)
    manifest = manifest_of(other)
    manifest["settings"]["dimension"] = 768
    (other / "manifest.json").write_text(json.dumps(manifest))
    target = tmp_path / "data"

    result = rag(data_env(target), "restore", str(other))

    assert result.returncode == 2
    assert_one_line_error(result)
    assert "768" in result.stderr and "RAG_EMBEDDER__MODEL_DIR" in result.stderr
    assert not target.exists() or not any(target.iterdir())


def test_a_restore_of_a_folder_that_is_no_backup_exits_2(tmp_path: Path) -> None:
    result = rag(data_env(tmp_path / "data"), "restore", str(tmp_path))
    assert result.returncode == 2
    assert_one_line_error(result)
    assert "manifest.json" in result.stderr


def test_an_erasure_made_after_the_backup_survives_restoring_it(
    tmp_path: Path, share: Path, backup_dir: Path
) -> None:
    env = data_env(tmp_path / "data")
    rag_json(env, "restore", str(backup_dir))
    pdf = str(share / PROCUREMENT)
    query = SEARCHES[2]
    assert pdf in {h["path"] for h in hits(env, query)}
    rag_json(env, "erase", pdf, "--by", "dpo")
    assert pdf not in {h["path"] for h in hits(env, query)}

    restored = rag_json(env, "restore", str(backup_dir), "--force")

    assert restored["erasures_reapplied"] == [document_id(pdf)]
    assert pdf not in {h["path"] for h in hits(env, query)}
    assert hits(env, query)  # the other documents are back
    status = rag_json(env, "status")
    assert (status["documents"], status["erased"]) == (3, 1)
    assert rag_json(env, "ingest", str(share))["skipped"] == 1
    assert pdf not in {h["path"] for h in hits(env, query)}
    assert rag_json(env, "audit", "--verify")["ok"]
    events = rag_json(env, "audit", "--limit", "0")["events"]
    assert any(e["action"] == "erase" and e["user"] == "dpo" for e in events)
    replaced = Path(env["RAG_DATA_DIR"]) / restored["previous_audit_log"]
    assert '"action": "erase"' in replaced.read_text()  # the log it replaced is kept
    assert AuditLog(replaced, 365).verify().ok  # with its head beside it


# -- what someone who can write to the backups may try ---------------------------------------


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("keys") / "backup.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o400)
    return key


def with_key(env: dict[str, str], key: Path) -> dict[str, str]:
    return {**env, "RAG_BACKUP__KEY_FILE": str(key)}


@pytest.fixture(scope="module")
def signed_backup(
    tmp_path_factory: pytest.TempPathFactory, source: dict[str, str], key_file: Path
) -> Path:
    folder = tmp_path_factory.mktemp("signed") / "nightly"
    assert rag_json(with_key(source, key_file), "backup", str(folder))["manifest_signed"]
    return folder


def add_admin(users_db: Path, scratch: Path) -> None:
    """Put an admin `mallory` into a backup's users database, as an attacker would."""
    made = rag(data_env(scratch), "users", "add", "mallory", "--admin", stdin="mallory-pw\n")
    assert made.returncode == 0, made.stderr
    with contextlib.closing(sqlite3.connect(users_db)) as db:
        db.execute("ATTACH DATABASE ? AS scratch", (str(scratch / "users.sqlite3"),))
        db.execute("INSERT INTO users SELECT * FROM scratch.users")
        db.commit()
        db.execute("DETACH DATABASE scratch")


def recompute_manifest(folder: Path) -> None:
    manifest = manifest_of(folder)
    manifest["files"] = [
        {"path": path.relative_to(folder).as_posix(), "size": path.stat().st_size,
         "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in ("manifest.json", "manifest.sig")
    ]  # fmt: skip
    manifest["counts"]["users"] += 1
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def test_a_signed_backup_restores_with_its_key(
    tmp_path: Path, signed_backup: Path, key_file: Path
) -> None:
    restored = rag_json(with_key(data_env(tmp_path / "data"), key_file), "restore",
                        str(signed_backup))  # fmt: skip
    assert restored["manifest_signed"] is True and restored["documents"] == 4


def test_a_backup_rewritten_with_an_added_admin_and_a_recomputed_manifest_is_refused_with_a_key(
    tmp_path: Path, signed_backup: Path, key_file: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(signed_backup, tampered)
    add_admin(tampered / "users.sqlite3", tmp_path / "scratch")
    recompute_manifest(tampered)
    target = tmp_path / "data"
    keyed = with_key(data_env(target), key_file)

    resigned = rag(keyed, "restore", str(tampered))

    assert resigned.returncode == 1
    assert_one_line_error(resigned)
    assert "signature" in resigned.stderr and "RAG_BACKUP__KEY_FILE" in resigned.stderr
    assert not target.exists() or not any(target.iterdir())
    (tampered / "manifest.sig").unlink()
    unsigned = rag(keyed, "restore", str(tampered))
    assert unsigned.returncode == 2
    assert_one_line_error(unsigned)
    assert "manifest.sig" in unsigned.stderr
    assert not target.exists() or not any(target.iterdir())
    # Without a key the checksums cannot tell: the restore goes ahead and says so.
    trusted = rag(data_env(target), "restore", str(tampered), "--json")
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout)["manifest_signed"] is False
    assert "not signed" in trusted.stderr
    admins = [u["user"] for u in rag_json(data_env(target), "users", "list")["users"]
              if u["admin"]]  # fmt: skip
    assert admins == ["mallory"]


def test_a_symlinked_folder_inside_the_store_copy_is_refused_and_nothing_is_read_through_it(
    tmp_path: Path, backup_dir: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(backup_dir, tampered)
    folder = next(p for p in sorted((tampered / "store").iterdir()) if p.is_dir())
    elsewhere = tmp_path / "elsewhere" / folder.name
    elsewhere.parent.mkdir()
    shutil.move(folder, elsewhere)
    folder.symlink_to(elsewhere, target_is_directory=True)  # every checksum still matches
    untouched = {p: (p.read_bytes(), p.stat().st_mtime_ns)
                 for p in elsewhere.rglob("*") if p.is_file()}  # fmt: skip
    target = tmp_path / "data"

    result = rag(data_env(target), "restore", str(tampered))

    assert result.returncode == 2
    assert_one_line_error(result)
    assert f"store/{folder.name}" in result.stderr and "symbolic link" in result.stderr
    assert not target.exists() or not any(target.iterdir())
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in elsewhere.rglob("*") if p.is_file()} == untouched  # fmt: skip


def rewrite_in_manifest(folder: Path, name: str) -> None:
    """What someone who changes a file of an unsigned backup does next."""
    manifest = manifest_of(folder)
    data = (folder / name).read_bytes()
    for entry in manifest["files"]:
        if entry["path"] == name:
            entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_backup_whose_audit_log_lost_its_last_events_is_refused(
    tmp_path: Path, backup_dir: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(backup_dir, tampered)
    log = tampered / "audit.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("".join(line + "\n" for line in lines[:-1]))  # the last event is gone
    rewrite_in_manifest(tampered, "audit.jsonl")
    target = tmp_path / "data"

    result = rag(data_env(target), "restore", str(tampered))

    assert result.returncode == 1
    assert_one_line_error(result)
    assert "audit log" in result.stderr and f"event {len(lines)} was removed" in result.stderr
    assert not target.exists() or not any(target.iterdir())


def test_a_restore_under_a_key_signs_a_backup_taken_without_one(
    tmp_path: Path, backup_dir: Path
) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_bytes(os.urandom(48).hex().encode())
    key_file.chmod(0o600)
    env = {**data_env(tmp_path / "data"), "RAG_AUDIT__KEY_FILE": str(key_file)}

    rag_json(env, "restore", str(backup_dir))

    verified = rag_json(env, "audit", "--verify")
    assert (verified["ok"], verified["sealed"], verified["signed"]) == (True, True, True)
    actions = [e["action"] for e in rag_json(env, "audit", "--limit", "0")["events"]]
    assert actions[:2] == ["restore", "seal"]
    unkeyed = {k: v for k, v in env.items() if k != "RAG_AUDIT__KEY_FILE"}
    assert rag_json(unkeyed, "audit", "--verify")["ok"]
