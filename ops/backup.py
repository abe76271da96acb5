"""Backing up the appliance's state into a folder, and restoring it from one.

A backup folder holds consistent copies of the SQLite databases (ledger, users, API tokens,
conversations, ratings; taken with SQLite's online backup, so the appliance may keep running),
the audit log, the audit log's sealed head (`audit.jsonl.head`, copied with the log between
two appends), the vector index as the store writes it (`store/`), and `manifest.json`: when,
which version, the settings a restore must agree with, counts, the audit log's check, and
every file's size and SHA-256. With a manifest key (RAG_BACKUP__KEY_FILE), `manifest.sig`
holds the manifest's HMAC-SHA256, so the checksums also show who wrote them. The folder is
0700 and its files 0600, whatever the modes of the data folder's files: a backup holds
password hashes, conversations and every passage.

The ledger is copied before the index: whatever the index gains meanwhile (an ingestion run
going on) is a file the ledger doesn't know yet, which the next `rag ingest` reconciles.

A restore refuses a backup holding a symbolic link (or any entry that is neither a file nor a
folder), and with a manifest key one whose signature is missing or wrong; it says when the
manifest it trusts is unsigned. It checks every file against the manifest, and the audit log
against its head, before it changes anything: an audit log that passed its check when the
backup was taken must pass it now (with the same key when it was signed). Then it replaces the
index, the databases and the audit log with its head (the ones it replaces are kept next to
them); with a key configured, a log the backup holds unsigned is sealed under it. Erasures
recorded in the data folder's ledger before the restore are applied again to what was
restored: a backup taken before an erasure does not bring the document back. Page pictures are
a cache and are neither backed up nor kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import importlib.metadata
import json
import logging
import os
import shutil
import sqlite3
import stat
import time
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.audit import AuditLog, audit_key, build_audit, head_path
from appliance.conversations import ConversationStore
from appliance.erase import erase
from appliance.feedback import FeedbackStore
from ingest.ledger import Ledger, LedgerReader, Tombstone, erasure_note
from retrieval.build import build_embedder, build_store
from settings import OPEN_TO_OTHERS, PROJECT_ROOT, Settings

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SIGNATURE_SCHEME = "hmac-sha256"
SHORTEST_KEY = 16
FORMAT = 1
STORE_FOLDER = "store"
AUDIT_FILE = "audit.jsonl"

Say = Callable[[str], None]

log = logging.getLogger(__name__)


class BackupError(Exception):
    """A backup or restore that could not be done. Subclasses say whose fault it is."""


class BackupRefused(BackupError):
    """An unusable input (a folder that isn't empty, a data folder already in use, a backup
    made for another embedding model): nothing was changed."""


class BackupDamaged(BackupError):
    """A file of the backup is missing or differs from its manifest: nothing was changed."""


def _quiet(message: str) -> None:
    pass


def databases(settings: Settings) -> dict[str, Path]:
    """The SQLite databases a backup holds: their file name in the backup, and where they live."""
    return {
        "ledger.sqlite3": settings.ledger_path,
        "users.sqlite3": settings.users_path,
        "tokens.sqlite3": settings.tokens_path,
        "history.sqlite3": settings.history_path,
        "feedback.sqlite3": settings.feedback_path,
    }


# -- backup ----------------------------------------------------------------------------------


def backup(settings: Settings, folder: Path, say: Say = _quiet) -> dict[str, Any]:
    """Write a backup of the data folder into `folder` (missing or empty); returns
    `{"dir", "files", "chunks", "documents", "seconds", "warnings", "manifest_signed"}`."""
    started = time.monotonic()
    folder = folder.absolute()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupRefused(f"{folder} is not an empty folder; give a new or empty folder")
    if not settings.ledger_path.exists():
        raise BackupRefused(
            f"no ledger at {settings.ledger_path}: nothing to back up; set RAG_DATA_DIR to the "
            "appliance's data folder"
        )
    key = manifest_key(settings)
    say("reading the embedding model's dimension")
    compatibility = _compatibility(settings)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _make_private(folder)
        manifest = _write_backup(settings, folder, compatibility, say)
        if key is not None:
            manifest_bytes = (folder / MANIFEST).read_bytes()
            _write_atomically(folder / SIGNATURE, _signature(key, manifest_bytes) + "\n")
        _make_private(folder)
    except BaseException:
        _empty(folder, remove=created)
        raise
    counts = manifest["counts"]
    detail = {
        "dir": str(folder),
        "files": len(manifest["files"]),
        "documents": counts["documents"],
        "chunks": counts["chunks"],
    }
    build_audit(settings).record("operator", "backup", detail)
    seconds = round(time.monotonic() - started, 3)
    return {
        **detail,
        "seconds": seconds,
        "warnings": manifest["warnings"],
        "manifest_signed": key is not None,
    }


def _write_backup(
    settings: Settings, folder: Path, compatibility: dict[str, Any], say: Say
) -> dict[str, Any]:
    for name, source in databases(settings).items():  # the ledger first: see the docstring
        if source.exists():
            say(f"copying {name}")
            _copy_database(source, folder / name)
    say("copying the index")
    store_folder = folder / STORE_FOLDER
    store_folder.mkdir()
    store = build_store(settings)
    try:
        store_info = store.backup(store_folder)
    finally:
        store.close()
    say("copying the audit log")
    audit_check = _copy_audit(settings, folder / AUDIT_FILE)
    counts = _counts(folder, int(store_info.get("points", 0)))
    warnings = []
    if counts["chunks"] != counts["ledger_chunks"]:
        warnings.append(
            f"the index holds {counts['chunks']} chunks where the ledger counts "
            f"{counts['ledger_chunks']}: files were being ingested; the next `rag ingest` "
            "after a restore completes them"
        )
    if audit_check is not None and not audit_check["ok"]:
        problem = audit_check["problem"]
        warnings.append(f"the audit log fails its check ({problem}); it was copied as it is")
    say("writing the manifest")
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "appliance_version": appliance_version(),
        "data_dir": str(settings.data_dir.absolute()),
        "settings": compatibility,
        "store": store_info,
        "counts": counts,
        "audit_chain": audit_check,
        "warnings": warnings,
        "files": _inventory(folder),
    }
    _write_atomically(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _compatibility(settings: Settings) -> dict[str, Any]:
    """The settings a restored index must agree with."""
    embedder = build_embedder(settings)
    return {
        "embedder_model": embedder.model_id,
        "dimension": embedder.dimension,
        "store_engine": "server" if settings.qdrant.url else "embedded",
        "collection": settings.qdrant.collection,
    }


def appliance_version() -> str:
    try:
        return importlib.metadata.version("rag-appliance")
    except importlib.metadata.PackageNotFoundError:
        with (PROJECT_ROOT / "pyproject.toml").open("rb") as project:
            return str(tomllib.load(project)["project"]["version"])


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a live database, as one self-contained file."""
    with (
        contextlib.closing(sqlite3.connect(source, timeout=30)) as live,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        live.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # no -wal file beside it
        (check,) = copy.execute("PRAGMA quick_check").fetchone()
    if check != "ok":
        raise BackupError(f"the copy of {source} fails SQLite's check ({check}); run it again")


def _copy_audit(settings: Settings, target: Path) -> dict[str, Any] | None:
    """Copy the audit log and its head between two appends; the copy checked against its head."""
    log = build_audit(settings)
    if not log.path.exists():
        return None
    log.copy_to(target)
    return _backup_audit(settings, target, signed=log.signed).verify().as_json()


def _backup_audit(settings: Settings, log: Path, signed: bool) -> AuditLog:
    key = audit_key(settings) if signed else None
    return AuditLog(log, settings.audit.retention_days, key=key)


@contextlib.contextmanager
def _audit_locked(log: Path) -> Iterator[None]:
    """The lock `AuditLog` takes around an append or a retention rewrite."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log.with_name(log.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _counts(folder: Path, points: int) -> dict[str, int]:
    counts = {"documents": 0, "ledger_chunks": 0, "erased": 0, "users": 0, "audit_events": 0}
    ledger = LedgerReader(folder / "ledger.sqlite3").counts()
    counts["documents"], counts["ledger_chunks"] = ledger["indexed"], ledger["chunks"]
    counts["erased"] = ledger["erased"]
    users = folder / "users.sqlite3"
    if users.exists():
        with _read_only(users) as db:
            (counts["users"],) = db.execute("SELECT COUNT(*) FROM users").fetchone()
    audit = folder / AUDIT_FILE
    if audit.exists():
        with audit.open("rb") as lines:
            counts["audit_events"] = sum(1 for line in lines if line.strip())
    return {"chunks": points, **counts}


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)) as db:
        yield db


def _inventory(folder: Path) -> list[dict[str, Any]]:
    return [
        {
            "path": path.relative_to(folder).as_posix(),
            "size": path.stat().st_size,
            "sha256": _sha256(path),
        }
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in (MANIFEST, SIGNATURE)
    ]


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _make_private(folder: Path) -> None:
    """Close the backup to group and others: copies keep no mode of the data folder's files."""
    try:
        folder.chmod(0o700)
    except OSError as exc:
        raise BackupRefused(
            f"cannot make {folder} private to this account ({exc.strerror or exc}); give a "
            "folder it owns"
        ) from exc
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
                if mode & OPEN_TO_OTHERS:
                    os.chmod(entry.path, stat.S_IMODE(mode) & ~OPEN_TO_OTHERS)
                if stat.S_ISDIR(mode):
                    pending.append(Path(entry.path))


# -- the manifest's signature ----------------------------------------------------------------


def manifest_key(settings: Settings) -> bytes | None:
    """The secret of RAG_BACKUP__KEY_FILE (surrounding white space dropped); None when unset."""
    path = settings.backup.key_file
    if path is None:
        return None
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise BackupRefused(
            f"cannot read the manifest key RAG_BACKUP__KEY_FILE={path} "
            f"({exc.strerror or exc}); make it readable by the account that runs `rag`"
        ) from exc
    if len(key) < SHORTEST_KEY:
        raise BackupRefused(
            f"the manifest key in {path} holds {len(key)} bytes, fewer than {SHORTEST_KEY}; "
            f"write a random one: `head -c 32 /dev/urandom > {path}`"
        )
    return key


def _signature(key: bytes, manifest: bytes) -> str:
    return f"{SIGNATURE_SCHEME}:{hmac.new(key, manifest, hashlib.sha256).hexdigest()}"


def check_signature(folder: Path, key: bytes, manifest: bytes) -> None:
    """`manifest` (the bytes of the backup's manifest) carries the signature `key` makes of it;
    refused otherwise."""
    try:
        found = (folder / SIGNATURE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise BackupRefused(
            f"the backup in {folder} has no {SIGNATURE} and RAG_BACKUP__KEY_FILE is set: it was "
            "not written by `rag backup` with the key, or its signature was removed; nothing "
            "was changed; restore a signed backup (one made before the key was set restores "
            "with RAG_BACKUP__KEY_FILE unset, once you trust it)"
        ) from None
    except (OSError, ValueError) as exc:
        raise BackupDamaged(f"cannot read {folder / SIGNATURE}: {exc}") from exc
    if not hmac.compare_digest(found.encode(), _signature(key, manifest).encode()):
        raise BackupDamaged(
            f"the manifest of {folder} does not carry the signature of RAG_BACKUP__KEY_FILE: the "
            "backup was changed after `rag backup` wrote it, or signed with another key; "
            "nothing was changed; restore from another backup, or set the key it was signed with"
        )


# -- restore ---------------------------------------------------------------------------------


def read_manifest(folder: Path, key: bytes | None = None) -> dict[str, Any]:
    """The backup's manifest; with `key`, only when it carries that key's signature."""
    path = folder / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BackupRefused(
            f"{folder} is not a backup (no {MANIFEST}); give the folder `rag backup` wrote"
        ) from None
    except OSError as exc:
        raise BackupDamaged(f"cannot read {path}: {exc}") from exc
    if key is not None:
        check_signature(folder, key, raw)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise BackupDamaged(f"cannot read {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupRefused(
            f"{path} is not a manifest this version reads (format {FORMAT}); restore it with "
            "the appliance version that wrote it"
        )
    return manifest


def refuse_links(folder: Path) -> None:
    """A backup holds files and folders only. A symbolic link (or a device, a pipe) anywhere in
    it is refused before anything is read through it: a restore copies nothing from outside."""
    pending = [folder]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif not entry.is_file(follow_symlinks=False):
                    name = Path(entry.path).relative_to(folder).as_posix()
                    kind = "a symbolic link" if entry.is_symlink() else "not a regular file"
                    raise BackupRefused(
                        f"backup entry {name} in {folder} is {kind}: `rag backup` writes only "
                        "files and folders, so the backup was changed; nothing was changed; "
                        "restore from another backup"
                    )


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is there with its size and SHA-256, and no other."""
    listed = {entry["path"]: entry for entry in manifest["files"]}
    for name, entry in listed.items():
        path = folder / name
        if not path.is_file():
            raise BackupDamaged(
                f"backup file {name} is missing from {folder}; nothing was changed; restore "
                "from another backup"
            )
        if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
            raise BackupDamaged(
                f"backup file {name} does not match its SHA-256 in the manifest: the backup is "
                "damaged or was changed; nothing was changed; restore from another backup"
            )
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name not in (MANIFEST, SIGNATURE) and name not in listed:
            raise BackupDamaged(
                f"backup file {name} is not in the manifest: the backup was changed; nothing "
                "was changed; restore from another backup"
            )


def restore(
    settings: Settings, folder: Path, force: bool = False, say: Say = _quiet
) -> dict[str, Any]:
    """Replace the data folder's state with the backup in `folder`; returns
    `{"dir", "documents", "chunks", "erasures_reapplied", "previous_audit_log",
    "manifest_signed"}`."""
    folder = folder.absolute()
    key = manifest_key(settings)
    manifest = read_manifest(folder, key)
    if key is None:
        log.warning(
            "the manifest of %s is not signed: its checksums show the files are whole, not who "
            "wrote them; set RAG_BACKUP__KEY_FILE to sign backups and check restores",
            folder,
        )
    say("checking that the backup holds only files and folders")
    refuse_links(folder)
    say("checking every file of the backup")
    verify_files(folder, manifest)
    say("checking the embedding model")
    _check_compatibility(settings, manifest)
    say("checking the audit log against its head")
    seal_audit = _check_audit(settings, folder / AUDIT_FILE, manifest)
    store = build_store(settings)
    try:
        if not force and (settings.ledger_path.exists() or store.count() > 0):
            raise BackupRefused(
                f"the data folder {settings.data_dir.absolute()} already holds an index or a "
                "ledger; restore into an empty RAG_DATA_DIR, or add --force to replace it "
                "(its erasures are applied again)"
            )
        erasures = _tombstones(settings)
        say("restoring the index")
        store.restore(folder / STORE_FOLDER)
    finally:
        store.close()
    for name, target in databases(settings).items():
        say(f"restoring {name}")
        _restore_database(folder / name, target)
    previous_log = _restore_audit(settings, folder / AUDIT_FILE)
    if seal_audit:
        build_audit(settings).seal("operator")
    shutil.rmtree(settings.page_images_dir, ignore_errors=True)  # a cache of the old index
    reapplied = _reapply_erasures(settings, erasures, say)
    documents, chunks = _totals(settings)
    result = {
        "dir": str(folder),
        "documents": documents,
        "chunks": chunks,
        "erasures_reapplied": reapplied,
        "previous_audit_log": previous_log,
        "manifest_signed": key is not None,
    }
    detail = {**result, "created_at": manifest["created_at"]}
    build_audit(settings).record("operator", "restore", detail)
    return result


def _check_compatibility(settings: Settings, manifest: dict[str, Any]) -> None:
    wanted = manifest["settings"]
    embedder = build_embedder(settings)
    if embedder.dimension != wanted["dimension"]:
        raise BackupRefused(
            f"the backup's index holds {wanted['dimension']}-dimensional vectors of the model "
            f"{wanted['embedder_model']!r}; the embedding model in {settings.embedder_dir} makes "
            f"{embedder.dimension}: set RAG_EMBEDDER__MODEL_DIR to that model's folder to "
            "restore it, or index the shares anew with this model (`rag ingest PATH...`)"
        )


def _check_audit(settings: Settings, log: Path, manifest: dict[str, Any]) -> bool:
    """Refuse a backup whose audit log passed its check when it was taken and fails it now.
    Returns whether the restored log must be sealed under the configured key."""
    if not log.exists():
        return False
    taken = manifest.get("audit_chain") or {}
    unsigned = _backup_audit(settings, log, signed=False).verify()
    keyed = _backup_audit(settings, log, signed=True).verify()
    if taken.get("ok") is False:
        return False  # broken when it was taken: restored as it is, as evidence
    now = keyed if taken.get("signed") else unsigned
    if not now.ok:
        raise BackupDamaged(
            f"the backup's audit log fails its check ({now.problem}) but passed it when the "
            "backup was taken: the backup was changed, or it was signed with another key than "
            "RAG_AUDIT__KEY_FILE's; nothing was changed; restore from another backup"
        )
    return not keyed.ok  # intact, but not signed under the configured key


def _tombstones(settings: Settings) -> list[Tombstone]:
    if not settings.ledger_path.exists():
        return []
    ledger = Ledger(settings.ledger_path)
    try:
        return ledger.tombstones()
    finally:
        ledger.close()


def _restore_database(source: Path, target: Path) -> None:
    """Replace a database's content with the backup's, through SQLite, so that a process
    holding it open sees the old content or the new."""
    if not source.exists():
        for stale in (target, *(target.with_name(target.name + s) for s in ("-wal", "-shm"))):
            stale.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        _read_only(source) as copy,
        contextlib.closing(sqlite3.connect(target, timeout=30)) as live,
    ):
        copy.backup(live)


def _restore_audit(settings: Settings, source: Path) -> str | None:
    """Put the backup's audit log and its head in place; the ones they replace are renamed,
    never deleted. Returns the name the log was given."""
    target = settings.audit_path
    kept = None
    with _audit_locked(target):
        if (target.exists() and target.stat().st_size) or head_path(target).exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = target.with_name(f"{target.name}.replaced-{stamp}")
            if target.exists():
                os.replace(target, kept)
            if head_path(target).exists():
                os.replace(head_path(target), head_path(kept))
        if source.exists():
            _write_atomically(target, source.read_text(encoding="utf-8"))
        else:
            target.unlink(missing_ok=True)
        if head_path(source).exists():
            text = head_path(source).read_text(encoding="utf-8")
            _write_atomically(head_path(target), text)
    return kept.name if kept else None


def _reapply_erasures(settings: Settings, erasures: list[Tombstone], say: Say) -> list[str]:
    """Record the erasures the restored ledger lacks, and erase those documents again (with
    their copies, conversations and ratings). Returns the document ids erased again."""
    ledger = Ledger(settings.ledger_path)
    try:
        known = {(t.path, t.sha256) for t in ledger.tombstones()}
        missing = [t for t in erasures if (t.path, t.sha256) not in known]
        for tombstone in missing:
            ledger.erase(tombstone.path, [tombstone], erasure_note(tombstone, tombstone.path))
    finally:
        ledger.close()
    by_document = {t.doc_id: t.erased_by for t in missing}
    if not by_document:
        return []
    say(f"erasing {len(by_document)} documents again")
    history = ConversationStore(settings.history_path)
    feedback = FeedbackStore(settings.feedback_path)
    try:
        for doc_id, by in by_document.items():
            erase(settings, doc_id=doc_id, by=by, records=[history, feedback])
    finally:
        history.close()
        feedback.close()
    return list(by_document)


def _totals(settings: Settings) -> tuple[int, int]:
    ledger = Ledger(settings.ledger_path)
    try:
        documents = ledger.totals()["documents"]
    finally:
        ledger.close()
    store = build_store(settings)
    try:
        return documents, store.count()
    finally:
        store.close()


# -- files -----------------------------------------------------------------------------------


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    partial.chmod(0o600)
    os.replace(partial, path)


def _empty(folder: Path, remove: bool) -> None:
    """Undo a backup that failed half-way, so the folder can be used again."""
    if remove:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
