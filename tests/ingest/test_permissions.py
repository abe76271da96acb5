"""Who may read a file, from real owners, modes, POSIX ACLs and folders on a real share.

Host accounts with the prefix `ragperm-` are created for the module (root only) and removed
after it: alice and bob in group fin, bob and carol in group hr, dave in neither.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.identity import build_identity
from appliance.users import User, UserDirectory
from ingest import pipeline
from ingest.catalog import Catalog
from ingest.ledger import Ledger
from ingest.permissions import (
    UNREADABLE_PERMISSIONS,
    ShareAccess,
    UninterpretableAcl,
    UnreadablePermissions,
    parse_posix_acl,
)
from ingest.pipeline import Ingestor
from llm.build import build_answerer
from retrieval.access import Scope
from retrieval.build import build_sparse, build_store
from retrieval.models import document_id
from retrieval.retriever import Retriever
from retrieval.store import SearchQuery
from settings import AccessSettings, Settings
from tests.conftest import RAG, make_settings

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setfacl") is None or shutil.which("useradd") is None,
    reason="needs root (chown, test accounts) and setfacl (apt package acl)",
)

FIN, HR = "ragperm-fin", "ragperm-hr"
ALICE, BOB, CAROL, DAVE = "ragperm-alice", "ragperm-bob", "ragperm-carol", "ragperm-dave"
HOST_ACCOUNTS = {ALICE: [FIN], BOB: [FIN, HR], CAROL: [HR], DAVE: []}
GHOST = 54321  # an id with no name on the host


def _exists(kind: str, name: str) -> bool:
    return subprocess.run(["getent", kind, name], capture_output=True).returncode == 0


@pytest.fixture(scope="module", autouse=True)
def host_accounts() -> Iterator[None]:
    for group in (FIN, HR):
        if not _exists("group", group):
            subprocess.run(["groupadd", "--system", group], check=True)
    for user, groups in HOST_ACCOUNTS.items():
        if _exists("passwd", user):
            subprocess.run(["userdel", user], check=True)
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        subprocess.run([*command, *(["-G", ",".join(groups)] if groups else []), user], check=True)
    yield
    for user in HOST_ACCOUNTS:
        subprocess.run(["userdel", user], capture_output=True)
    for group in (FIN, HR):
        subprocess.run(["groupdel", group], capture_output=True)


def make(path: Path, mode: int, owner: str = "root", group: str = "root", *acl: str) -> Path:
    """A file (or, when `path` ends with /, a folder) with that owner, mode and ACL entries."""
    if str(path).endswith("/") or path.suffix == "":
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"The {path.stem.replace('-', ' ')} file of the share.\n")
    os.chown(path, _uid(owner), _gid(group))
    path.chmod(mode)
    for entry in acl:
        subprocess.run(["setfacl", "-m", entry, str(path)], check=True)
    return path


def _uid(name: str) -> int:
    return int(name) if name.isdigit() else pwd.getpwnam(name).pw_uid


def _gid(name: str) -> int:
    return int(name) if name.isdigit() else grp.getgrnam(name).gr_gid


def readers(path: Path, root: Path) -> set[str]:
    return set(ShareAccess().principals(str(path), str(root)))


# The truth table: (file mode, owner, group, ACL), (folder mode, owner, group, ACL) → readers.
TABLE = [
    pytest.param(
        (0o644, "root", "root", ()), (0o755, "root", "root", ()),
        {"user:root", "group:root", "everyone"}, id="world-readable in an open folder",
    ),
    pytest.param(
        (0o644, "root", "root", ()), (0o750, "root", FIN, ()),
        {"user:root", f"group:{FIN}"}, id="everyone meets a folder only fin may traverse",
    ),
    pytest.param(
        (0o640, "root", HR, ()), (0o750, "root", FIN, ()),
        {"user:root", f"user:{BOB}"}, id="group hr meets group fin: their common member",
    ),
    pytest.param(
        (0o640, ALICE, HR, ()), (0o750, "root", FIN, ()),
        {f"user:{ALICE}", f"user:{BOB}"},
        id="owner alice and group hr each meet fin: two routes, both kept",
    ),
    pytest.param(
        (0o604, ALICE, FIN, ()), (0o755, "root", "root", ()),
        {f"user:{ALICE}"}, id="group without r refuses its members: no everyone",
    ),
    pytest.param(
        (0o044, ALICE, FIN, ()), (0o755, "root", "root", ()),
        {f"user:{BOB}"}, id="owner without r: the group becomes its other members",
    ),
    pytest.param(
        (0o600, "root", "root", (f"u:{CAROL}:r",)), (0o755, "root", "root", ()),
        {"user:root", f"user:{CAROL}"}, id="named user entry",
    ),
    pytest.param(
        (0o600, "root", "root", (f"u:{CAROL}:r", "m::-")), (0o755, "root", "root", ()),
        {"user:root"}, id="the mask takes r from the named user",
    ),
    pytest.param(
        (0o644, "root", "root", (f"g:{HR}:r", "m::-")), (0o755, "root", "root", ()),
        {"user:root"}, id="the mask takes r from every group: no everyone",
    ),
    pytest.param(
        (0o640, "root", "root", (f"g:{HR}:r",)), (0o755, "root", "root", ()),
        {"user:root", "group:root", f"group:{HR}"}, id="named group entry",
    ),
    pytest.param(
        (0o644, "root", "root", ()), (0o700, "root", "root", (f"u:{DAVE}:x",)),
        {"user:root", f"user:{DAVE}"}, id="a folder's ACL lets one user traverse",
    ),
    pytest.param(
        (0o644, "root", "root", ()), (0o755, "root", HR, (f"u:{CAROL}:-",)),
        {"user:root", f"user:{BOB}"}, id="a folder refusing a named user: hr minus carol",
    ),
    pytest.param(
        (0o640, str(GHOST), str(GHOST), ()), (0o755, "root", "root", ()),
        {f"uid:{GHOST}", f"gid:{GHOST}"}, id="ids without names stay numeric",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("file", "folder", "expected"), TABLE)
def test_effective_readers_follow_the_truth_table(
    tmp_path: Path, file: tuple[Any, ...], folder: tuple[Any, ...], expected: set[str]
) -> None:
    root = make(tmp_path / "share", 0o755)
    mode, owner, group, acl = folder
    make(root / "folder", mode, owner, group, *acl)
    mode, owner, group, acl = file
    path = make(root / "folder" / "doc.txt", mode, owner, group, *acl)
    assert readers(path, root) == expected


def test_every_folder_from_the_root_down_must_be_traversable(tmp_path: Path) -> None:
    root = make(tmp_path / "share", 0o750, "root", FIN)
    make(root / "a", 0o755)
    make(root / "a" / "b", 0o750, "root", HR)
    path = make(root / "a" / "b" / "doc.txt", 0o644)
    assert readers(path, root) == {"user:root", f"user:{BOB}"}
    assert readers(root / "a" / "b" / "doc.txt", root / "a" / "b") == {"user:root", f"group:{HR}"}
    assert readers(path, path) == {"user:root", "group:root", "everyone"}  # a file as the root


def test_folder_results_are_kept_for_one_run_only(tmp_path: Path) -> None:
    root = make(tmp_path / "share", 0o755)
    first, second = make(root / "f" / "one.txt", 0o644), make(root / "f" / "two.txt", 0o644)
    access = ShareAccess()
    assert "everyone" in access.principals(str(first), str(root))
    (root / "f").chmod(0o700)
    assert "everyone" in access.principals(str(second), str(root))  # cached within the run
    assert ShareAccess().principals(str(second), str(root)) == {"user:root"}


def test_the_acl_is_parsed_from_its_binary_form(tmp_path: Path) -> None:
    path = make(tmp_path / "doc.txt", 0o640, "root", "root", f"u:{CAROL}:r", f"g:{HR}:rw")
    acl = parse_posix_acl(os.getxattr(path, "system.posix_acl_access"))
    assert acl.named_users == ((_uid(CAROL), 4),)
    assert acl.named_groups == ((_gid(HR), 6),)
    assert (acl.owner, acl.owning_group, acl.other, acl.mask) == (6, 4, 0, 6)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        struct.pack("<I", 3) + struct.pack("<HHI", 1, 6, 0xFFFFFFFF),  # unknown version
        struct.pack("<I", 2) + b"\x01\x00\x06",  # a truncated entry
        struct.pack("<I", 2) + struct.pack("<HHI", 0x40, 4, 0),  # an unknown tag
        struct.pack("<I", 2) + struct.pack("<HHI", 1, 6, 0) + struct.pack("<HHI", 2, 4, 7)
        + struct.pack("<HHI", 4, 4, 0) + struct.pack("<HHI", 0x20, 4, 0),  # no mask
    ],
)  # fmt: skip
def test_a_malformed_acl_is_refused(blob: bytes) -> None:
    with pytest.raises(UninterpretableAcl):
        parse_posix_acl(blob)


def test_an_nt_acl_overrides_the_mode_bits_and_a_malformed_one_makes_them_unreadable(
    tmp_path: Path,
) -> None:
    path = make(tmp_path / "doc.txt", 0o644)
    # Samba's NDR counts the DACL's offset from the start of the attribute: 8 + 20.
    empty_dacl = struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 28) + struct.pack(
        "<BBHHH", 2, 0, 8, 0, 0
    )
    os.setxattr(path, "security.NTACL", struct.pack("<HHI", 1, 1, 0x20000) + empty_dacl)
    assert readers(path, path) == set()  # nobody, although the mode bits say everyone
    os.setxattr(path, "security.NTACL", b"\x04\x00\x04\x00")
    with pytest.raises(UninterpretableAcl, match="security.NTACL: the Samba NT ACL is truncated"):
        readers(path, tmp_path)


def test_getxattr_failing_for_another_reason_makes_permissions_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make(tmp_path / "share", 0o755)
    path = make(root / "locked" / "doc.txt", 0o644)
    real = os.getxattr
    locked = os.stat(root / "locked")

    def refused_on_the_folder(target: Any, name: str, *args: Any, **kwargs: Any) -> bytes:
        if isinstance(target, int) and os.path.samestat(os.fstat(target), locked):
            raise OSError(errno.EACCES, "Permission denied")
        return real(target, name, *args, **kwargs)

    monkeypatch.setattr(os, "getxattr", refused_on_the_folder)
    with pytest.raises(UnreadablePermissions, match=f"folder {root / 'locked'}"):
        readers(path, root)
    assert readers(make(root / "open.txt", 0o644), root) >= {"everyone"}


# --- through the real pipeline, retriever, answerer, catalog and CLI -------------------------

# Appliance users: the host's, plus erin, whose directory group maps to the share group fin.
APPLIANCE_USERS = {ALICE: [FIN], BOB: [FIN, HR], CAROL: [HR], DAVE: [], "erin": ["finance-team"]}
GROUP_MAP = {"finance-team": [FIN]}
TOPICS = {  # document: a sentence only it holds
    "public": "The canteen serves lunch from noon.",
    "alice-private": "Alice keeps her performance review notes here.",
    "fin-only": "The quarterly budget forecast shows a surplus.",
    "carol-acl": "Carol's onboarding checklist lists the laptop setup.",
    "carol-masked": "The masked tender evaluation scores are confidential.",
    "hr-group": "Salary bands for engineers are reviewed each spring.",
    "in-fin-folder": "Invoices are approved by the finance controller.",
    "hr-in-fin-folder": "The bonus pool for finance staff is discussed.",
    "dave-folder": "Dave's folder holds the server room access log.",
    "ghost": "An orphaned file from a departed employee.",
}
# Who may read what, as the rule in ingest/permissions.py derives it.
EXPECTED = {
    ALICE: {"public", "alice-private", "fin-only", "in-fin-folder"},
    BOB: {"public", "fin-only", "hr-group", "in-fin-folder", "hr-in-fin-folder"},
    CAROL: {"public", "carol-acl", "hr-group"},
    DAVE: {"public", "dave-folder"},
    "erin": {"public", "fin-only", "in-fin-folder"},
}


def build_share(root: Path) -> dict[str, Path]:
    make(root, 0o755)
    docs = {
        "public": make(root / "public.txt", 0o644),
        "alice-private": make(root / "alice-private.txt", 0o600, ALICE, ALICE),
        "fin-only": make(root / "fin-only.txt", 0o640, "root", FIN),
        "carol-acl": make(root / "carol-acl.txt", 0o600, "root", "root", f"u:{CAROL}:r"),
        "carol-masked": make(
            root / "carol-masked.txt", 0o600, "root", "root", f"u:{CAROL}:r", "m::-"
        ),
        "hr-group": make(root / "hr-group.txt", 0o600, "root", "root", f"g:{HR}:r"),
        "ghost": make(root / "ghost.txt", 0o640, str(GHOST), str(GHOST)),
    }
    make(root / "finance", 0o750, "root", FIN)
    docs["in-fin-folder"] = make(root / "finance" / "in-fin-folder.txt", 0o644)
    docs["hr-in-fin-folder"] = make(root / "finance" / "hr-in-fin-folder.txt", 0o640, "root", HR)
    make(root / "dave", 0o700, "root", "root", f"u:{DAVE}:x")
    docs["dave-folder"] = make(root / "dave" / "dave-folder.txt", 0o644)
    for name, path in docs.items():
        path.write_text(TOPICS[name] + "\n")
    return docs


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", access=AccessSettings(group_map=GROUP_MAP))


@pytest.fixture
def directory(settings: Settings) -> Iterator[UserDirectory]:
    users = UserDirectory(settings.users_path, settings.access.group_map)
    for name, groups in APPLIANCE_USERS.items():
        users.add(name, "a-long-password", groups)
    yield users
    users.close()


@pytest.fixture
def ingestor(settings: Settings, embedder: Any) -> Ingestor:
    return Ingestor(settings, embedder, build_store(settings), Ledger(settings.ledger_path))


def visible(ingestor: Ingestor, scope: Scope, docs: dict[str, Path]) -> set[str]:
    by_path = {str(path): name for name, path in docs.items()}
    vector = ingestor._embedder.embed_query("the file of the share")
    hits = ingestor._store.search(SearchQuery("file share", vector), scope, 100)
    return {by_path[h.chunk.path] for h in hits}


def test_each_user_finds_exactly_what_the_share_lets_them_read(
    tmp_path: Path, settings: Settings, directory: UserDirectory, ingestor: Ingestor
) -> None:
    docs = build_share(tmp_path / "share")
    report = ingestor.run([str(tmp_path / "share")], workers=1)
    assert (report.indexed, report.failed) == (len(docs), [])
    retriever = Retriever(ingestor._embedder, ingestor._store, build_sparse(settings))
    answerer = build_answerer(settings, retriever)
    catalog = Catalog(settings.ledger_path)
    by_path = {str(path): name for name, path in docs.items()}
    for name, expected in EXPECTED.items():
        user = directory.get(name)
        assert visible(ingestor, user.scope, docs) == expected, name
        for topic, sentence in TOPICS.items():
            found = {by_path[h.chunk.path] for h in retriever.search(sentence, user.scope, 20)}
            assert found <= expected, (name, topic)
            prepared = answerer.prepare(sentence, user.scope)
            assert {by_path[h.chunk.path] for h in prepared.passages} <= expected
            prompt = json.dumps(prepared.messages or [])
            assert all(TOPICS[other] not in prompt for other in set(TOPICS) - expected)
        assert {by_path[e.path] for e in catalog.documents(user.scope)} == expected, name


def test_the_cli_searches_as_a_user_with_the_group_mapping(tmp_path: Path) -> None:
    docs = build_share(tmp_path / "share")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path / "cli-data")
    env["RAG_ACCESS__GROUP_MAP"] = json.dumps(GROUP_MAP)

    def rag(*args: str, stdin: str = "") -> Any:
        done = subprocess.run([str(RAG), *args, "--json"], env=env, input=stdin,
                              capture_output=True, text=True, check=True)  # fmt: skip
        return json.loads(done.stdout)

    assert rag("ingest", str(tmp_path / "share"), "--workers", "1")["failed"] == []
    rag("users", "add", "erin", "--groups", "finance-team", stdin="a-long-password\n")
    hits = rag("search", "budget forecast surplus invoices canteen", "--k", "20", "--user", "erin")
    by_path = {str(path): name for name, path in docs.items()}
    assert {by_path[h["path"]] for h in hits["hits"]} == EXPECTED["erin"]


def test_the_group_mapping_reaches_every_way_a_user_is_built(
    settings: Settings, directory: UserDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    erin = directory.get("erin")
    assert erin.share_groups == (FIN,)
    assert erin.principals == {
        "user:erin",
        "everyone",
        "group:finance-team",
        f"group:{FIN}",
        "sids:unknown",
    }
    signed_in = build_identity(settings).authenticate("erin", "a-long-password")
    assert signed_in is not None and f"group:{FIN}" in signed_in.principals
    assert f"group:{FIN}" not in UserDirectory(settings.users_path, {}).get("erin").principals
    monkeypatch.setenv("RAG_ACCESS__GROUP_MAP", json.dumps({"finance-team": [HR]}))
    from_environment = UserDirectory(settings.users_path).get("erin")
    assert from_environment.share_groups == (HR,)
    assert User("erin", ("finance-team",), False).principals == {
        "user:erin", "everyone", "group:finance-team", "sids:unknown"
    }  # fmt: skip


def test_permission_changes_move_access_on_the_next_run_without_parsing(
    tmp_path: Path,
    directory: UserDirectory,
    ingestor: Ingestor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = build_share(tmp_path / "share")
    ingestor.run([str(tmp_path / "share")], workers=1)
    (tmp_path / "share" / "finance").chmod(0o755)  # a folder opens to everyone
    subprocess.run(["setfacl", "-m", f"u:{DAVE}:r", str(docs["fin-only"])], check=True)
    subprocess.run(["setfacl", "-x", f"u:{CAROL}", str(docs["carol-acl"])], check=True)
    subprocess.run(["setfacl", "-x", f"u:{DAVE}", str(tmp_path / "share" / "dave")], check=True)

    def no_parsing(self: Any, job: Any) -> None:
        raise AssertionError(f"{job.path} was sent to the parsers again")

    monkeypatch.setattr(pipeline.BackgroundParsing, "submit", no_parsing)
    report = ingestor.run([str(tmp_path / "share")], workers=1)
    assert (report.unchanged, report.pages, report.failed) == (len(docs), 0, [])
    expected = dict(EXPECTED)
    expected[CAROL] = {"public", "hr-group", "in-fin-folder", "hr-in-fin-folder"}
    expected[DAVE] = {"public", "fin-only", "in-fin-folder"}
    for name, readable in expected.items():
        assert visible(ingestor, directory.get(name).scope, docs) == readable, name
    record = ingestor._ledger.get(str(docs["in-fin-folder"]))
    assert record is not None and "everyone" in record.acl


def test_unreadable_permissions_remove_the_file_until_they_can_be_read(
    tmp_path: Path, ingestor: Ingestor
) -> None:
    docs = build_share(tmp_path / "share")
    ingestor.run([str(tmp_path / "share")], workers=1)
    target = docs["public"]
    os.setxattr(target, "security.NTACL", b"\x04\x00\x04\x00")
    report = ingestor.run([str(tmp_path / "share")], workers=1)
    assert [f.path for f in report.failed] == [str(target)]
    assert report.failed[0].error.startswith(UNREADABLE_PERMISSIONS)
    record = ingestor._ledger.get(str(target))
    assert record is not None and record.status == "failed"
    assert record.error == report.failed[0].error and record.acl == frozenset()
    assert ingestor._store.count(document_id(str(target))) == 0
    assert str(target) not in {e.path for e in Catalog(ingestor._settings.ledger_path)
                               .documents(Scope.operator())}  # fmt: skip
    os.removexattr(target, "security.NTACL")
    again = ingestor.run([str(tmp_path / "share")], workers=1)
    assert (again.indexed, again.failed) == (1, [])
    assert ingestor._store.count(document_id(str(target))) > 0
