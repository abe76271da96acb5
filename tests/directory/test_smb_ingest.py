"""`rag ingest smb://…`: a share of the tests' real Active Directory domain, read over the SMB
protocol with smbprotocol, through the real pipeline, parsers, embedder and index.

The NTFS ACLs are set over SMB with smbcacls, as an administrator sets them from Windows. The
run signs in as the domain's Administrator, which Samba holds to the ACLs like anyone else:
every folder and file grants Domain Admins full control, mapped to `group:domain-admins`
by `access.sid_map`. Each test works in a folder of its own on the session's share.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.errors import BadIngestRoot
from ingest.ledger import FileRecord, Ledger
from ingest.permissions import UNREADABLE_PERMISSIONS
from ingest.pipeline import Ingestor, IngestReport, NoProgress, check_roots
from ingest.smb import SmbShare
from retrieval.build import build_store
from settings import PROJECT_ROOT, Settings
from tests.conftest import RAG, make_settings
from tests.directory.samba_domain import ADMIN, ADMIN_PASSWORD, WORKGROUP, SambaDomain

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts" / "smb"
ADMINS = "group:domain-admins"


@pytest.fixture(scope="module")
def corp(samba_domain: SambaDomain) -> dict[str, str]:
    """Accounts of the domain, by name: their SIDs. Carol is in Auditors, a group nested in
    Finance; Alice is in Finance; `indexer` is an account with no rights of its own."""
    samba_domain.add_group("Finance")
    samba_domain.add_group("Auditors")
    for user in ("alice", "carol", "indexer"):
        samba_domain.add_user(user, f"Passw0rd-{user}!")
    samba_domain.add_members("Finance", "alice", "Auditors")
    samba_domain.add_members("Auditors", "carol")
    sids = {name: samba_domain.user_sid(name) for name in ("alice", "carol", "indexer")}
    sids |= {name: samba_domain.group_sid(name) for name in ("Finance", "Auditors")}
    sids["Administrator"] = samba_domain.user_sid(ADMIN)
    sids["Domain Admins"] = samba_domain.group_sid("Domain Admins")
    return sids


def full_control(corp: dict[str, str]) -> str:
    """The SDDL entry giving Domain Admins full control, inherited by files and folders (the
    domain's SID: smbcacls would read the alias `DA` as its own machine's)."""
    return f"(A;OICI;FA;;;{corp['Domain Admins']})"


def password_file(folder: Path, password: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "smb-password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


def smb_settings(
    data_dir: Path, corp: dict[str, str], user: str = ADMIN, password: str = ADMIN_PASSWORD,
    timeout: float = 30.0,
) -> Settings:  # fmt: skip
    return make_settings(
        data_dir,
        smb={"username": user, "domain": WORKGROUP, "timeout_seconds": timeout,
             "password_file": password_file(data_dir.with_name(f"{data_dir.name}-secret"),
                                            password)},
        access={"sid_map": {corp["Domain Admins"]: ADMINS}},
    )  # fmt: skip


class Run:
    """The pipeline over one data folder, as `rag ingest` builds it."""

    def __init__(self, settings: Settings, embedder: Any) -> None:
        self.settings = settings
        self.ledger = Ledger(settings.ledger_path)
        self.store = build_store(settings)
        self.ingestor = Ingestor(settings, embedder, self.store, self.ledger)

    def __call__(self, *roots: str, progress: Any = None) -> IngestReport:
        return self.ingestor.run(list(roots), progress, workers=1)

    def record(self, url: str) -> FileRecord:
        found = self.ledger.get(url)
        assert found is not None, f"{url} is not in the ledger"
        return found

    def chunk_paths_and_acls(self, url: str) -> set[tuple[str, frozenset[str]]]:
        chunks = self.store.document_chunks(self.record(url).doc_id)
        return {(chunk.path, chunk.acl) for chunk, _ in chunks}


@pytest.fixture
def make_run(embedder: Any) -> Iterator[Callable[[Settings], Run]]:
    runs: list[Run] = []

    def make(settings: Settings) -> Run:
        runs.append(Run(settings, embedder))
        return runs[-1]

    yield make
    for run in runs:
        run.ledger.close()
        run.store.close()


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs whose content a run downloaded (the real download, counted)."""
    fetched: list[str] = []
    real_download = SmbShare.download

    def counted(self: SmbShare, handle: Any, url: str, suffix: str) -> tuple[str, str]:
        fetched.append(url)
        return real_download(self, handle, url, suffix)

    monkeypatch.setattr(SmbShare, "download", counted)
    return fetched


class Tree:
    """A folder of the session's share, written over SMB."""

    def __init__(self, domain: SambaDomain, name: str, staging: Path) -> None:
        self.domain = domain
        self.name = name
        self.staging = staging
        staging.mkdir(parents=True, exist_ok=True)
        domain.mkdir(name)

    @property
    def url(self) -> str:
        return f"smb://{self.domain.address}/docs/{self.name}"

    def url_of(self, inner: str) -> str:
        return f"{self.url}/{inner}"

    def remote(self, inner: str) -> str:
        return f"{self.name}/{inner}".replace("/", "\\")

    def folder(self, inner: str, sddl: str | None = None) -> None:
        self.domain.mkdir(self.remote(inner))
        if sddl is not None:
            self.acl(inner, sddl)

    def file(self, inner: str, text: str, sddl: str | None = None) -> str:
        local = self.staging / inner.replace("/", "__")
        local.write_text(text)
        self.domain.put(local, self.remote(inner))
        if sddl is not None:
            self.acl(inner, sddl)
        return self.url_of(inner)

    def acl(self, inner: str, sddl: str) -> None:
        self.domain.set_sddl(self.remote(inner), sddl)


def document(title: str, sentence: str) -> str:
    return f"# {title}\n\n{sentence}\n"


# -- who may read ---------------------------------------------------------------------------


def test_each_file_carries_the_principals_of_its_own_ntfs_acl(
    samba_domain: SambaDomain, corp: dict[str, str], tmp_path: Path,
    make_run: Callable[[Settings], Run],
) -> None:  # fmt: skip
    finance, carol, alice = corp["Finance"], corp["carol"], corp["alice"]
    admins = corp["Domain Admins"]
    tree = Tree(samba_domain, "acls", tmp_path / "staging")
    tree.acl("", f"D:P{full_control(corp)}")
    public = tree.file("public.md", document("Canteen", "Lunch is served from noon."),
                       f"D:P(A;;FA;;;{admins})(A;;FR;;;WD)")  # fmt: skip
    tree.folder("finance", f"D:P{full_control(corp)}(A;OICI;FR;;;{finance})")
    inherited = tree.file("finance/budget.md", document("Budget", "The 2026 budget grows 4%."))
    denied = tree.file("finance/audit-notes.md", document("Audit", "Notes of the auditors."),
                       f"D:P(A;;FA;;;{admins})(A;;FR;;;{finance})(D;;FR;;;{carol})")  # fmt: skip
    alice_only = tree.file("finance/alice-only.md", document("Bonus", "Alice's bonus letter."),
                           f"D:P(A;;FA;;;{admins})(A;;FR;;;{alice})")  # fmt: skip
    builtin_denied = tree.file("users-denied.md", document("Rota", "The weekend rota."),
                               f"D:P(A;;FA;;;{admins})(A;;FR;;;WD)(D;;FR;;;BU)")  # fmt: skip
    tree.folder(".snapshot")
    tree.file(".snapshot/old.md", document("Old", "An old copy."))
    run = make_run(smb_settings(tmp_path / "data", corp))

    report = run(tree.url)

    assert not report.failed, report.failed
    expected = {
        public: {ADMINS, "everyone"},
        inherited: {ADMINS, f"sid:{finance}"},
        denied: {ADMINS, f"sid:{finance}", f"deny:sid:{carol}", "deny:sids:unknown"},
        alice_only: {ADMINS, f"sid:{alice}"},
        builtin_denied: set(),  # a deny of BUILTIN\Users: its members are unknown here
    }
    assert {url: set(run.record(url).acl) for url in expected} == expected
    assert report.indexed == len(expected)
    # The chunks are cited by the file's URL and carry its ACL.
    assert run.chunk_paths_and_acls(denied) == {(denied, frozenset(expected[denied]))}
    assert run.ledger.get(tree.url_of(".snapshot/old.md")) is None


# -- incremental runs -----------------------------------------------------------------------


def test_unchanged_files_are_not_downloaded_and_an_acl_change_is_applied_without_parsing(
    samba_domain: SambaDomain, corp: dict[str, str], tmp_path: Path,
    make_run: Callable[[Settings], Run], downloads: list[str],
) -> None:  # fmt: skip
    tree = Tree(samba_domain, "incremental", tmp_path / "staging")
    tree.acl("", f"D:P{full_control(corp)}(A;OICI;FR;;;WD)")
    files = [tree.file(f"notes-{n}.md", document(f"Notes {n}", f"Meeting {n} chose plan {n}."))
             for n in range(3)]  # fmt: skip
    run = make_run(smb_settings(tmp_path / "data", corp))
    first = run(tree.url)
    assert first.indexed == 3 and sorted(downloads) == sorted(files)
    downloads.clear()

    again = run(tree.url)

    assert (again.unchanged, again.indexed, again.updated, again.failed) == (3, 0, 0, [])
    assert downloads == []

    admins = corp["Domain Admins"]
    tree.acl("notes-1.md", f"D:P(A;;FA;;;{admins})(A;;FR;;;{corp['Finance']})")
    after_acl_change = run(tree.url)

    assert (after_acl_change.unchanged, after_acl_change.updated, after_acl_change.pages) == (
        3, 0, 0,
    )  # fmt: skip
    assert downloads == []
    finance_only = frozenset({ADMINS, f"sid:{corp['Finance']}"})
    assert run.record(files[1]).acl == finance_only
    assert run.chunk_paths_and_acls(files[1]) == {(files[1], finance_only)}


def test_a_deleted_file_leaves_the_index_and_a_moved_file_keeps_its_chunks_unparsed(
    samba_domain: SambaDomain, corp: dict[str, str], tmp_path: Path,
    make_run: Callable[[Settings], Run], downloads: list[str],
) -> None:  # fmt: skip
    tree = Tree(samba_domain, "moves", tmp_path / "staging")
    tree.acl("", f"D:P{full_control(corp)}(A;OICI;FR;;;WD)")
    tree.folder("archive")
    doomed = tree.file("doomed.md", document("Doomed", "This file will be deleted."))
    moving = tree.file("moving.md", document("Moving", "This file moves to the archive."))
    run = make_run(smb_settings(tmp_path / "data", corp))
    run(tree.url)
    samba_domain.smbclient(f'del "{tree.remote("doomed.md")}"',
                           f'rename "{tree.remote("moving.md")}" '
                           f'"{tree.remote("archive/moving.md")}"')  # fmt: skip
    moved = tree.url_of("archive/moving.md")
    downloads.clear()

    report = run(tree.url)

    assert (report.deleted, report.indexed, report.pages, report.failed) == (2, 1, 0, [])
    assert downloads == [moved]  # downloaded to be hashed, not parsed: its chunks are reused
    assert run.ledger.get(doomed) is None and run.ledger.get(moving) is None
    assert run.record(moved).status == "indexed"
    assert {path for path, _ in run.chunk_paths_and_acls(moved)} == {moved}


# -- what goes wrong ------------------------------------------------------------------------


def test_roots_that_cannot_be_used_stop_the_run_with_one_line_saying_what_to_fix(
    samba_domain: SambaDomain, corp: dict[str, str], tmp_path: Path,
    make_run: Callable[[Settings], Run],
) -> None:  # fmt: skip
    tree = Tree(samba_domain, "refused", tmp_path / "staging")
    tree.acl("", f"D:P{full_control(corp)}")
    address = samba_domain.address
    admin = make_run(smb_settings(tmp_path / "admin", corp))
    wrong_password = make_run(smb_settings(tmp_path / "wrong", corp, "indexer", "not-it-1!"))
    indexer = make_run(smb_settings(tmp_path / "indexer", corp, "indexer", "Passw0rd-indexer!"))
    cases = [
        (wrong_password, tree.url, "refused CORP\\indexer: wrong user name or password"),
        (admin, f"smb://{address}/nosuch", f"{address} has no share named nosuch"),
        (admin, f"smb://{address}/docs/refused/missing", "no such folder or file on the share"),
        (indexer, tree.url, "access denied to CORP\\indexer; give it read access"),
        (admin, f"smb://{address}:1/docs", f"cannot connect to {address}:1 (connection refused)"),
    ]
    for run, root, message in cases:
        with pytest.raises(BadIngestRoot, match=".*".join(map(_escaped, message.split()))):
            run(root)
        assert run.ledger.totals()["documents"] == 0
    for bad, message in [
        ("smb://", "no valid server name"),
        (f"smb://{address}", "no share named"),
        (f"smb://alice@{address}/docs", "set RAG_SMB__USERNAME"),
        (f"smb://{address}/docs/../etc", ". and .. are not allowed"),
    ]:
        with pytest.raises(BadIngestRoot, match=_escaped(message)):
            check_roots([bad])


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


def test_a_file_whose_security_descriptor_cannot_be_read_leaves_the_index(
    samba_domain: SambaDomain, corp: dict[str, str], tmp_path: Path,
    make_run: Callable[[Settings], Run], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    tree = Tree(samba_domain, "guarded", tmp_path / "staging")
    # Read and execute: Samba checks the folder's POSIX mode too, which needs x to list it.
    tree.acl("", f"D:P{full_control(corp)}(A;OICI;0x1200a9;;;WD)")
    secret = tree.file("secret.md", document("Secret", "The vault code is kept elsewhere."))
    other = tree.file("other.md", document("Other", "Nothing to hide here."))
    # An account of no group of its own: the files' owner (BUILTIN\\Administrators) keeps
    # READ_CONTROL whatever the DACL says, so the domain's Administrator could not be refused.
    run = make_run(smb_settings(tmp_path / "data", corp, "indexer", "Passw0rd-indexer!"))
    run(tree.url)
    assert run.record(secret).status == "indexed"
    # The ingest account may no longer read the file's permissions (READ_CONTROL denied).
    refuse_read_control = f"(D;;RC;;;{corp['indexer']})"
    tree.acl("secret.md", f"D:P{refuse_read_control}{full_control(corp)}(A;;FR;;;WD)")

    report = run(tree.url)

    record = run.record(secret)
    assert record.status == "failed" and (record.error or "").startswith(UNREADABLE_PERMISSIONS)
    assert [failure.path for failure in report.failed] == [secret]
    assert run.store.count(record.doc_id) == 0
    assert run.record(other).status == "indexed"

    # The server refuses the descriptor query on a file it let the run open (injected).
    def refused(self: SmbShare, handle: Any, url: str) -> bytes:
        raise PermissionError(13, "access denied", url)

    monkeypatch.setattr(SmbShare, "security_descriptor", refused)
    report = run(tree.url)
    other_record = run.record(other)
    assert (other_record.error or "").startswith(UNREADABLE_PERMISSIONS)
    assert run.store.count(other_record.doc_id) == 0
    assert "cannot read the file's security descriptor" in (other_record.error or "")


class PauseAfter(NoProgress):
    """Freezes the domain's servers once the run has settled the file `path`."""

    def __init__(self, domain: SambaDomain, path: str) -> None:
        self.domain = domain
        self.path = path
        self.paused = False

    def advance(self, path: str, pages: int, chunks: int) -> None:
        if path == self.path:
            self.domain.pause()
            self.paused = True


def test_a_server_that_stops_answering_fails_the_file_in_flight_and_the_next_run_completes(
    samba_domain: SambaDomain, corp: dict[str, str], tmp_path: Path,
    make_run: Callable[[Settings], Run],
) -> None:  # fmt: skip
    tree = Tree(samba_domain, "drop", tmp_path / "staging")
    tree.acl("", f"D:P{full_control(corp)}(A;OICI;FR;;;WD)")
    urls = [tree.file(f"{name}.md", document(name, f"Version one of {name}."))
            for name in ("a", "b", "c", "d")]  # fmt: skip
    run = make_run(smb_settings(tmp_path / "data", corp, timeout=3.0))
    run(tree.url)
    indexed = {url: run.record(url).sha256 for url in urls}
    for name in ("c", "d"):
        tree.file(f"{name}.md", document(name, f"Version two of {name}, longer than one."))
    progress = PauseAfter(samba_domain, urls[1])  # b is unchanged; c is the next file read

    started = time.monotonic()
    try:
        dropped = run(tree.url, progress=progress)
    finally:
        samba_domain.resume()
    seconds = time.monotonic() - started

    assert progress.paused
    failures = {failure.path: failure.error for failure in dropped.failed}
    assert set(failures) == {urls[2], tree.url}
    assert (
        failures[urls[2]].startswith("cannot read:")
        and "did not answer within 3s" in (failures[urls[2]])
    )
    assert "files not read this run: 1" in failures[tree.url]
    assert {url: run.record(url).sha256 for url in urls} == indexed  # nothing lost, nothing new
    assert seconds < 60  # each wait is bounded by the timeout

    completed = run(tree.url)

    assert (completed.updated, completed.unchanged, completed.failed) == (2, 2, [])
    assert all(run.record(url).sha256 != indexed[url] for url in urls[2:])


def test_rag_ingest_reads_a_share_over_smb_with_the_account_from_the_settings(
    samba_domain: SambaDomain, corp: dict[str, str], tmp_path: Path
) -> None:
    tree = Tree(samba_domain, "command", tmp_path / "staging")
    tree.acl("", f"D:P{full_control(corp)}(A;OICI;FR;;;WD)")
    tree.file("rota.md", document("Rota", "The weekend rota starts on Saturday."))
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAG_")}
    env |= {
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_SMB__USERNAME": ADMIN,
        "RAG_SMB__DOMAIN": WORKGROUP,
        "RAG_SMB__PASSWORD_FILE": str(password_file(tmp_path / "secret", ADMIN_PASSWORD)),
        "RAG_ACCESS__SID_MAP": json.dumps({corp["Domain Admins"]: ADMINS}),
    }

    done = subprocess.run([str(RAG), "ingest", tree.url, "--json"], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["indexed"], report["failed"]) == (1, [])

    wrong = password_file(tmp_path / "wrong", "not-it-2!")
    env |= {"RAG_SMB__USERNAME": "indexer", "RAG_SMB__PASSWORD_FILE": str(wrong)}
    refused = subprocess.run([str(RAG), "ingest", tree.url, "--json"], env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip

    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert json.loads(refused.stdout)["error"] == (
        f"{tree.url}: {samba_domain.address} refused CORP\\indexer: wrong user name or "
        "password; check RAG_SMB__USERNAME, RAG_SMB__DOMAIN and the password in "
        "RAG_SMB__PASSWORD_FILE"
    )


# -- how long it takes ----------------------------------------------------------------------


def test_ingesting_over_smb_and_from_the_local_view_of_the_same_files_is_timed(
    samba_domain: SambaDomain, corp: dict[str, str], tmp_path: Path,
    make_run: Callable[[Settings], Run],
) -> None:  # fmt: skip
    tree = Tree(samba_domain, "timing", tmp_path / "staging")
    tree.acl("", f"D:P{full_control(corp)}(A;OICI;FR;;;WD)")
    for folder in range(4):
        tree.folder(f"team-{folder}")
        for n in range(10):
            sentences = " ".join(
                f"Team {folder} decided in meeting {n} that item {k} goes to sprint {n + k}."
                for k in range(12)
            )
            tree.file(f"team-{folder}/minutes-{n}.md", document(f"Minutes {folder}-{n}",
                                                                sentences))  # fmt: skip
    # The local view: the same files, copied from the share's folder on the server without
    # Samba's `security.NTACL` attributes (the local NT ACL reader fails closed on the layout
    # Samba 4.17 writes: its descriptor offsets count from the attribute's start).
    server_side = samba_domain.share_path / "timing"
    local_view = tmp_path / "local-view" / "timing"
    for source in server_side.rglob("*.md"):
        target = local_view / source.relative_to(server_side)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    local_root = str(local_view)
    over_smb = make_run(smb_settings(tmp_path / "smb", corp))
    local = make_run(smb_settings(tmp_path / "local", corp))
    # The parser processes' server starts with the first run of the session: not timed.
    warm_up = tmp_path / "warm-up"
    warm_up.mkdir()
    (warm_up / "note.md").write_text(document("Warm-up", "Nothing to see."))
    assert make_run(smb_settings(tmp_path / "warm", corp))(str(warm_up)).indexed == 1

    timings: dict[str, dict[str, float | int]] = {}
    for name, run, root in (("smb", over_smb, tree.url), ("local", local, local_root)):
        first = run(root)
        second = run(root)
        assert (first.indexed, first.failed, second.unchanged) == (40, [], 40), first.failed
        timings[name] = {"files": first.files_seen, "chunks": first.chunks,
                         "first_run_seconds": round(first.seconds, 3),
                         "unchanged_run_seconds": round(second.seconds, 3)}  # fmt: skip

    assert timings["smb"]["chunks"] == timings["local"]["chunks"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
