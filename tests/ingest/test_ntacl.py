"""Who may read a file on an SMB share, from the NTFS ACLs its mount exposes.

Descriptors are built here by a small encoder ([MS-DTYP] 2.4.6). On ext4, `system.cifs_acl`
cannot be set, so the one function that reads an attribute (`permissions._attribute`) is
replaced to hand chosen files their descriptor; everything else is real. `security.NTACL`
(Samba's wrapper) can be set for real by root.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.users import UserDirectory
from ingest import ntacl, permissions
from ingest.ledger import Ledger
from ingest.ntacl import NtAclError, SidResolver, parse_descriptor, parse_sid
from ingest.permissions import (
    EXECUTE,
    READ,
    UNREADABLE_PERMISSIONS,
    ShareAccess,
    UninterpretableAcl,
)
from ingest.pipeline import Ingestor
from ingest.share_files import Handle
from retrieval.build import build_sparse, build_store
from retrieval.retriever import Retriever
from settings import Settings
from tests.conftest import make_settings

EVERYONE, AUTHENTICATED, SYSTEM, ADMINS = "S-1-1-0", "S-1-5-11", "S-1-5-18", "S-1-5-32-544"
DOMAIN = "S-1-5-21-1004336348-1177238915-682003330"
FIN, HR, DOMAIN_USERS = f"{DOMAIN}-1104", f"{DOMAIN}-1105", f"{DOMAIN}-513"
ALICE, BOB, CAROL = f"{DOMAIN}-1201", f"{DOMAIN}-1202", f"{DOMAIN}-1203"
UNMAPPED = f"{DOMAIN}-1299"
SID_MAP = {
    FIN: "group:ntfin",
    HR: "group:nthr",
    ALICE: "user:ntacl-alice",
    BOB: "user:ntacl-bob",
    DOMAIN_USERS: "everyone",
}

READ_DATA, TRAVERSE, READ_AND_EXECUTE, FULL = 0x1, 0x20, 0x1200A9, 0x1F01FF
GENERIC_READ, GENERIC_ALL, GENERIC_EXECUTE, MAXIMUM_ALLOWED = 0x80000000, 0x10000000, 0x20000000, 0x02000000  # noqa: E501  # fmt: skip
WRITE_AND_DELETE = 0x116 | 0x10000  # FILE_WRITE_DATA|APPEND|WRITE_EA|WRITE_ATTRIBUTES, DELETE
INHERIT_ONLY, INHERITED = 0x08 | 0x03, 0x10
ALLOWED, DENIED, ALLOWED_OBJECT, ALLOWED_CALLBACK = 0, 1, 5, 9
NO_DACL = object()


# --- an encoder of self-relative security descriptors ---------------------------------------


def sid_bytes(sid: str) -> bytes:
    _, revision, authority, *subauthorities = sid.split("-")
    return (
        bytes([int(revision), len(subauthorities)])
        + int(authority).to_bytes(6, "big")
        + struct.pack(f"<{len(subauthorities)}I", *map(int, subauthorities))
    )


def ace(kind: int, mask: int, sid: str, flags: int = 0) -> bytes:
    body = struct.pack("<I", mask) + sid_bytes(sid)
    return struct.pack("<BBH", kind, flags, 4 + len(body)) + body


def allow(mask: int, sid: str, flags: int = 0) -> bytes:
    return ace(ALLOWED, mask, sid, flags)


def deny(mask: int, sid: str, flags: int = 0) -> bytes:
    return ace(DENIED, mask, sid, flags)


def descriptor(*aces: bytes, dacl: object = None) -> bytes:
    """A descriptor owned by Administrators with a DACL of `aces` (dacl=NO_DACL: none)."""
    owner = sid_bytes(ADMINS)
    body = b"".join(aces)
    acl = struct.pack("<BBHHH", 2, 0, 8 + len(body), len(aces), 0) + body
    present = dacl is not NO_DACL
    dacl_offset = 20 + len(owner) if present else 0
    control = 0x8000 | (0x0004 if present else 0)
    header = struct.pack("<BBHIIII", 1, 0, control, 20, 0, 0, dacl_offset)
    return header + owner + (acl if present else b"")


def samba_ntacl(version: int, sd: bytes, description: bytes = b"posix_acl\0") -> bytes:
    """Samba's `xattr_NTACL` (librpc/idl/xattr.idl) around `sd`, as NDR lays it out: the
    descriptor's offsets then count from the start of the attribute."""
    head = struct.pack("<HHI", version, version, 0x20000)
    if version == 1:
        before = head
    else:
        inner = struct.pack("<I", 0x20004)
        if version == 2:
            before = head + inner + bytes(16)
        elif version == 3:
            before = head + inner + struct.pack("<H", 1) + bytes(range(64)) + b"\0\0"
        else:
            before = head + inner + struct.pack("<H", 1) + bytes(range(64)) + description
            before += bytes(-len(before) % 4) + struct.pack("<Q", 133000000000000000) + bytes(64)
            before += bytes(-len(before) % 4)
    return before + rebased(sd, len(before))


def rebased(sd: bytes, by: int) -> bytes:
    """`sd` with its owner, group, SACL and DACL offsets (those set) moved on by `by`."""
    revision, sbz1, control, *offsets = struct.unpack_from("<BBHIIII", sd)
    moved = [offset + by if offset else 0 for offset in offsets]
    return struct.pack("<BBHIIII", revision, sbz1, control, *moved) + sd[20:]


# --- the injected attribute read --------------------------------------------------------------

Inject = Callable[[Path, bytes], None]


@pytest.fixture
def cifs_acl(monkeypatch: pytest.MonkeyPatch) -> Inject:
    """`inject(path, blob)`: the path's `system.cifs_acl` now reads `blob`."""
    blobs: dict[str, bytes] = {}
    real = permissions._attribute

    def attribute(handle: Handle, name: str, where: str) -> bytes | None:
        if name == "system.cifs_acl" and handle.path in blobs:
            return blobs[handle.path]
        return real(handle, name, where)

    monkeypatch.setattr(permissions, "_attribute", attribute)
    return lambda path, blob: blobs.__setitem__(str(path), blob)


def file_readers(tmp_path: Path, inject: Inject, blob: bytes, sid_map: Any = None) -> set[str]:
    path = tmp_path / "doc.txt"
    path.write_text("a document\n")
    inject(path, blob)
    return set(
        ShareAccess(SID_MAP if sid_map is None else sid_map).principals(str(path), str(path))
    )


# --- the parser -------------------------------------------------------------------------------


def test_a_sid_is_read_from_its_binary_form() -> None:
    administrators = bytes.fromhex("01020000000000052000000020020000")  # [MS-DTYP] 2.4.2.2
    assert parse_sid(administrators, 0, len(administrators)) == "S-1-5-32-544"
    assert parse_sid(sid_bytes(FIN), 0, 28) == FIN
    wide = bytes([1, 1]) + (2**40).to_bytes(6, "big") + struct.pack("<I", 7)
    assert parse_sid(wide, 0, len(wide)) == "S-1-0x010000000000-7"


def test_the_dacl_is_read_in_order_with_types_flags_and_masks() -> None:
    parsed = parse_descriptor(
        descriptor(deny(READ_DATA, ALICE), allow(FULL, FIN, INHERITED), allow(1, EVERYONE, 0x0B))
    )
    assert parsed.dacl == (
        ntacl.Ace(DENIED, 0, READ_DATA, ALICE),
        ntacl.Ace(ALLOWED, INHERITED, FULL, FIN),
        ntacl.Ace(ALLOWED, 0x0B, 1, EVERYONE),
    )
    assert parse_descriptor(descriptor(dacl=NO_DACL)).dacl is None
    assert parse_descriptor(descriptor()).dacl == ()


DACL_AT = 20 + 16  # after the header and the owner SID (Administrators)
ACE_AT = DACL_AT + 8


def patched(blob: bytes, offset: int, replacement: bytes) -> bytes:
    return blob[:offset] + replacement + blob[offset + len(replacement) :]


TRUNCATIONS = [
    pytest.param(b"", "truncated", id="empty"),
    pytest.param(descriptor(allow(READ_DATA, FIN))[:19], "truncated", id="short header"),
    pytest.param(descriptor(allow(READ_DATA, FIN))[:-4], "runs past", id="cut in the last ACE"),
    pytest.param(b"\x02" + descriptor()[1:], "revision 2", id="descriptor revision"),
    pytest.param(
        descriptor()[:16] + struct.pack("<I", 4096), "outside the descriptor", id="dacl offset"
    ),
    pytest.param(patched(descriptor(allow(READ_DATA, FIN)), ACE_AT + 2, b"\0\0"), "bad size",
                 id="ACE of size 0"),
    pytest.param(patched(descriptor(allow(READ_DATA, FIN)), ACE_AT + 9, b"\x10"),
                 "16 subauthorities", id="SID with too many subauthorities"),
    pytest.param(patched(descriptor(allow(READ_DATA, FIN)), ACE_AT + 8, b"\x02"),
                 "revision 2 and 5", id="SID revision"),
    pytest.param(patched(descriptor(), DACL_AT, struct.pack("<BBHHH", 2, 0, 8, 2, 0)),
                 "truncated after 0 of 2", id="more ACEs counted than held"),
    pytest.param(patched(descriptor(), DACL_AT, b"\x03"), "DACL has unknown revision 3",
                 id="DACL revision"),
]  # fmt: skip


@pytest.mark.parametrize(("blob", "reason"), TRUNCATIONS)
def test_a_malformed_descriptor_is_refused_with_its_reason(blob: bytes, reason: str) -> None:
    with pytest.raises(NtAclError, match=reason):
        parse_descriptor(blob)


# --- who holds read: the rule ------------------------------------------------------------------

RULE = [
    pytest.param([allow(READ_DATA, EVERYONE)], {"everyone"}, id="Everyone"),
    pytest.param([allow(READ_AND_EXECUTE, AUTHENTICATED)], {"everyone"}, id="Authenticated Users"),
    pytest.param([allow(READ_DATA, FIN)], {"group:ntfin"}, id="a mapped group"),
    pytest.param([allow(FULL, ALICE)], {"user:ntacl-alice"}, id="a mapped user"),
    pytest.param([allow(GENERIC_READ, FIN), allow(GENERIC_ALL, HR), allow(MAXIMUM_ALLOWED, BOB)],
                 {"group:ntfin", "group:nthr", "user:ntacl-bob"}, id="generic rights grant"),
    pytest.param([allow(WRITE_AND_DELETE, EVERYONE), allow(TRAVERSE, FIN)], set(),
                 id="write, delete or traverse do not grant read"),
    pytest.param([allow(FULL, SYSTEM), allow(FULL, ADMINS), allow(FULL, "S-1-3-0")], set(),
                 id="SYSTEM, Administrators, CREATOR OWNER are nobody's"),
    pytest.param([allow(READ_DATA, EVERYONE, INHERIT_ONLY), allow(READ_DATA, HR)],
                 {"group:nthr"}, id="an inherit-only entry does not apply"),
    pytest.param([allow(READ_DATA, FIN, INHERITED)], {"group:ntfin"}, id="an inherited entry"),
    pytest.param([allow(READ_DATA, UNMAPPED)], {f"sid:{UNMAPPED}"}, id="an unresolved SID"),
    pytest.param([allow(READ_DATA, DOMAIN_USERS)], {"everyone"}, id="mapped to everyone"),
    pytest.param([], set(), id="an empty DACL lets nobody in"),
    pytest.param(NO_DACL, {"everyone"}, id="no DACL lets everyone in"),
    pytest.param([deny(READ_DATA, ALICE), allow(READ_DATA, ALICE), allow(READ_DATA, BOB)],
                 {"user:ntacl-bob"}, id="a denied user goes"),
    pytest.param([allow(READ_DATA, ALICE), deny(READ_DATA, ALICE)], set(),
                 id="a deny wins whatever its place"),
    pytest.param([deny(READ_DATA, ALICE), allow(READ_DATA, EVERYONE)], set(),
                 id="everyone but one user cannot be said"),
    pytest.param([deny(READ_DATA, ALICE), allow(READ_DATA, FIN), allow(READ_DATA, BOB)],
                 {"user:ntacl-bob"}, id="a group whose members are unknown is dropped"),
    pytest.param([deny(GENERIC_ALL, FIN), allow(READ_DATA, BOB)], set(),
                 id="a denied group whose members are unknown leaves nobody"),
    pytest.param([deny(READ_DATA, EVERYONE), allow(READ_DATA, ALICE)], set(), id="deny Everyone"),
    pytest.param([deny(READ_DATA, UNMAPPED), allow(READ_DATA, ALICE)], set(),
                 id="deny an unresolved SID"),
    pytest.param([deny(READ_DATA, "S-1-5-2"), allow(READ_DATA, ALICE)], set(),
                 id="deny NETWORK, a class of unknown members"),
    pytest.param([deny(FULL, SYSTEM), allow(READ_DATA, EVERYONE)], {"everyone"},
                 id="deny SYSTEM, held by no user"),
    pytest.param([deny(WRITE_AND_DELETE, EVERYONE), allow(READ_DATA, EVERYONE)], {"everyone"},
                 id="a deny of writing and deleting"),
    pytest.param([deny(0x100000, ALICE), allow(READ_DATA, ALICE), allow(READ_DATA, BOB)],
                 {"user:ntacl-bob"}, id="a deny of SYNCHRONIZE blocks opening"),
    pytest.param([deny(READ_DATA, EVERYONE, INHERIT_ONLY), allow(READ_DATA, EVERYONE)],
                 {"everyone"}, id="an inherit-only deny does not apply"),
    pytest.param([ace(ALLOWED_OBJECT, READ_DATA, EVERYONE, INHERIT_ONLY), allow(READ_DATA, HR)],
                 {"group:nthr"}, id="an inherit-only object entry is skipped"),
]  # fmt: skip


@pytest.mark.parametrize(("aces", "expected"), RULE)
def test_readers_follow_the_rule(
    tmp_path: Path, cifs_acl: Inject, aces: Any, expected: set[str]
) -> None:
    blob = descriptor(dacl=NO_DACL) if aces is NO_DACL else descriptor(*aces)
    assert file_readers(tmp_path, cifs_acl, blob) == expected


def test_a_dacl_offset_of_zero_means_no_dacl(tmp_path: Path, cifs_acl: Inject) -> None:
    blob = descriptor(allow(READ_DATA, FIN))
    assert file_readers(tmp_path, cifs_acl, blob[:16] + bytes(4) + blob[20:]) == {"everyone"}


@pytest.mark.parametrize("kind", [ALLOWED_OBJECT, 6, ALLOWED_CALLBACK, 0x0A])
def test_object_and_callback_entries_make_the_acl_uninterpretable(
    tmp_path: Path, cifs_acl: Inject, kind: int
) -> None:
    blob = descriptor(ace(kind, READ_DATA, EVERYONE), allow(READ_DATA, FIN))
    with pytest.raises(UninterpretableAcl, match=f"system.cifs_acl: .*entry of type {kind}"):
        file_readers(tmp_path, cifs_acl, blob)


def test_a_truncated_attribute_is_not_indexed_and_says_why(
    tmp_path: Path, cifs_acl: Inject
) -> None:
    with pytest.raises(UninterpretableAcl) as caught:
        file_readers(tmp_path, cifs_acl, descriptor(allow(READ_DATA, FIN))[:30])
    message = str(caught.value)
    assert message.startswith(f"{UNREADABLE_PERMISSIONS}: system.cifs_acl: ")
    assert "runs past the descriptor" in message or "outside the descriptor" in message
    assert "file server" in message


def test_folders_need_traverse_and_meet_the_file_as_posix_folders_do(
    tmp_path: Path, cifs_acl: Inject
) -> None:
    root = tmp_path / "share"
    (root / "finance").mkdir(parents=True)
    path = root / "finance" / "doc.txt"
    path.write_text("a document\n")
    cifs_acl(root, descriptor(allow(READ_AND_EXECUTE, DOMAIN_USERS)))
    cifs_acl(root / "finance", descriptor(allow(TRAVERSE, FIN), allow(READ_DATA, HR)))
    cifs_acl(path, descriptor(allow(READ_DATA, EVERYONE), allow(READ_DATA, HR)))
    access = ShareAccess(SID_MAP)
    assert access.principals(str(path), str(root)) == {"group:ntfin"}
    assert access.nt_acl_grantees("system.cifs_acl", descriptor(allow(GENERIC_EXECUTE, HR)),
                                  EXECUTE) == access.nt_acl_grantees(
        "system.cifs_acl", descriptor(allow(READ_DATA, HR)), READ)  # fmt: skip
    assert not access.nt_acl_grantees(
        "system.cifs_acl", descriptor(allow(MAXIMUM_ALLOWED, HR)), EXECUTE
    )


def test_a_share_without_nt_acls_falls_back_to_mode_bits(tmp_path: Path, cifs_acl: Inject) -> None:
    path = tmp_path / "doc.txt"
    path.write_text("a document\n")
    path.chmod(0o644)
    assert "everyone" in ShareAccess(SID_MAP).principals(str(path), str(path))


def test_the_sid_map_comes_from_the_settings(
    tmp_path: Path, cifs_acl: Inject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_ACCESS__SID_MAP", json.dumps({UNMAPPED: "group:auditors"}))
    path = tmp_path / "doc.txt"
    path.write_text("a document\n")
    cifs_acl(path, descriptor(allow(READ_DATA, UNMAPPED), allow(READ_DATA, FIN)))
    assert ShareAccess().principals(str(path), str(path)) == {"group:auditors", f"sid:{FIN}"}
    monkeypatch.setenv("RAG_ACCESS__SID_MAP", json.dumps({UNMAPPED: "auditors"}))
    with pytest.raises(ValueError, match="sid_map"):
        Settings()


# --- Samba's security.NTACL, set for real -----------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (security.* attributes)")


@needs_root
@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_samba_ntacl_versions_one_to_four_are_read(tmp_path: Path, version: int) -> None:
    path = tmp_path / "doc.txt"
    path.write_text("a document\n")
    sd = descriptor(deny(READ_DATA, ALICE), allow(READ_DATA, ALICE), allow(GENERIC_READ, BOB))
    os.setxattr(path, "security.NTACL", samba_ntacl(version, sd))
    assert ShareAccess(SID_MAP).principals(str(path), str(path)) == {"user:ntacl-bob"}


@needs_root
def test_a_samba_v4_description_of_any_length_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "doc.txt"
    path.write_text("a document\n")
    for description in (b"\0", b"ab\0", b"Samba NT ACL written by smbd\0"):
        sd = descriptor(allow(READ_DATA, FIN))
        os.setxattr(path, "security.NTACL", samba_ntacl(4, sd, description))
        assert ShareAccess(SID_MAP).principals(str(path), str(path)) == {"group:ntfin"}


@needs_root
@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (samba_ntacl(5, descriptor()), "unknown version 5"),
        (struct.pack("<HHI", 2, 1, 0x20000) + descriptor(), "unknown version 2"),
        (struct.pack("<HHI", 1, 1, 0) + descriptor(), "no security descriptor"),
        (samba_ntacl(4, descriptor())[:90], "truncated"),
        (b"\x04\x00\x04\x00", "truncated"),
    ],
)
def test_a_samba_ntacl_that_cannot_be_read_is_refused(
    tmp_path: Path, blob: bytes, reason: str
) -> None:
    path = tmp_path / "doc.txt"
    path.write_text("a document\n")
    os.setxattr(path, "security.NTACL", blob)
    with pytest.raises(UninterpretableAcl, match=f"security.NTACL: .*{reason}"):
        ShareAccess(SID_MAP).principals(str(path), str(path))


# --- denies of host groups, and winbind ---------------------------------------------------------

HOST_FIN, HOST_ALICE, HOST_BOB, HOST_CAROL = "ragnt-fin", "ragnt-alice", "ragnt-bob", "ragnt-carol"


def _exists(kind: str, name: str) -> bool:
    return subprocess.run(["getent", kind, name], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def host_accounts() -> Iterator[None]:
    """alice and bob in the host group fin, carol in none (root only)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd for host accounts")
    if not _exists("group", HOST_FIN):
        subprocess.run(["groupadd", "--system", HOST_FIN], check=True)
    for user, groups in {HOST_ALICE: [HOST_FIN], HOST_BOB: [HOST_FIN], HOST_CAROL: []}.items():
        if _exists("passwd", user):
            subprocess.run(["userdel", user], check=True)
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        subprocess.run([*command, *(["-G", ",".join(groups)] if groups else []), user], check=True)
    yield
    for user in (HOST_ALICE, HOST_BOB, HOST_CAROL):
        subprocess.run(["userdel", user], capture_output=True)
    subprocess.run(["groupdel", HOST_FIN], capture_output=True)


HOST_MAP = {FIN: f"group:{HOST_FIN}", ALICE: f"user:{HOST_ALICE}", BOB: f"user:{HOST_BOB}",
            CAROL: f"user:{HOST_CAROL}"}  # fmt: skip


@pytest.mark.usefixtures("host_accounts")
@pytest.mark.parametrize(
    ("aces", "expected"),
    [
        ([allow(READ_DATA, FIN)], {f"group:{HOST_FIN}"}),
        ([deny(READ_DATA, ALICE), allow(READ_DATA, FIN)], {f"user:{HOST_BOB}"}),
        ([deny(READ_DATA, FIN), allow(READ_DATA, ALICE), allow(READ_DATA, CAROL)],
         {f"user:{HOST_CAROL}"}),
        ([deny(READ_DATA, FIN), allow(READ_DATA, FIN)], set()),
        ([deny(READ_DATA, CAROL), allow(READ_DATA, FIN), allow(READ_DATA, CAROL)],
         {f"user:{HOST_ALICE}", f"user:{HOST_BOB}"}),
    ],
    ids=["a host group", "its members but the denied one", "users outside the denied group",
         "a group denied and allowed", "a group's members but a denied user"],
)  # fmt: skip
def test_denies_of_host_groups_keep_the_users_proved_outside_them(
    tmp_path: Path, cifs_acl: Inject, aces: list[bytes], expected: set[str]
) -> None:
    assert file_readers(tmp_path, cifs_acl, descriptor(*aces), HOST_MAP) == expected


def fake_wbinfo(tmp_path: Path, body: str) -> str:
    """A stand-in for winbind's client, answering in wbinfo's documented output format."""
    script = tmp_path / "wbinfo"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.usefixtures("host_accounts")
def test_winbind_names_domain_sids_by_their_type_and_host_id(tmp_path: Path) -> None:
    uid, gid = pwd.getpwnam(HOST_ALICE).pw_uid, grp.getgrnam(HOST_FIN).gr_gid
    wbinfo = fake_wbinfo(
        tmp_path,
        f"""case "$1 $2" in
  "--sid-to-name {ALICE}") printf '%s\\n' 'CORP\\{HOST_ALICE} 1';;
  "--sid-to-uid {ALICE}") echo {uid};;
  "--sid-to-name {FIN}") printf '%s\\n' 'CORP\\fin team 2';;
  "--sid-to-gid {FIN}") echo {gid};;
  "--sid-to-name {HR}") printf '%s\\n' 'CORP\\hr SID_NAME_DOM_GRP';;
  *) exit 1;;
esac""",
    )
    resolver = SidResolver({}, wbinfo=wbinfo)
    assert resolver.resolve(ALICE) == ntacl.Account("user", id=uid)
    assert resolver.resolve(FIN) == ntacl.Account("group", id=gid)
    assert resolver.resolve(HR) == ntacl.Account("unknown", HR)  # no gid mapped
    assert resolver.resolve(UNMAPPED) == ntacl.Account("unknown", UNMAPPED)
    assert SidResolver({ALICE: "user:someone"}, wbinfo=wbinfo).resolve(ALICE).name == "someone"


def test_a_hanging_winbind_is_given_up_for_the_run(tmp_path: Path) -> None:
    resolver = SidResolver({}, wbinfo=fake_wbinfo(tmp_path, "exec sleep 10"))
    started = time.monotonic()
    assert resolver.resolve(FIN) == ntacl.Account("unknown", FIN)
    assert resolver.resolve(HR) == ntacl.Account("unknown", HR)
    assert time.monotonic() - started < 6  # one timeout, not one per SID


# --- through the real pipeline and retriever -------------------------------------------------

APPLIANCE_USERS = {"ntacl-alice": ["ntfin"], "ntacl-bob": ["nthr"], "ntacl-carol": []}
TOPICS = {
    "public": "The canteen serves lunch from noon.",
    "budget": "The quarterly budget forecast shows a surplus.",
    "salaries": "Salary bands for engineers are reviewed each spring.",
    "hr-note": "The bonus pool for finance staff is discussed.",
    "alice-only": "Alice keeps her performance review notes here.",
    "nobody": "The server room access log is archived.",
    "open": "Visitors sign in at the front desk.",
    "inherit-only": "Onboarding checklists list the laptop setup.",
    "unmapped": "An orphaned file from a departed employee.",
    "posix": "The parking garage closes at midnight.",
    "malformed": "The tender evaluation scores are confidential.",
}
SHARE_ACLS: dict[str, Any] = {  # document: its descriptor (None: no NT ACL, mode bits)
    "public": descriptor(allow(READ_AND_EXECUTE, DOMAIN_USERS, INHERITED)),
    "finance/": descriptor(allow(READ_AND_EXECUTE, FIN), allow(FULL, SYSTEM)),
    "budget": descriptor(allow(READ_DATA, FIN, INHERITED), allow(FULL, ADMINS)),
    "salaries": descriptor(deny(WRITE_AND_DELETE, EVERYONE), allow(GENERIC_READ, FIN)),
    "hr-note": descriptor(deny(READ_DATA, ALICE), allow(READ_DATA, HR)),
    "alice-only": descriptor(allow(GENERIC_ALL, ALICE), allow(FULL, SYSTEM)),
    "nobody": descriptor(),
    "open": descriptor(dacl=NO_DACL),
    "inherit-only": descriptor(allow(FULL, EVERYONE, INHERIT_ONLY), allow(READ_DATA, HR)),
    "unmapped": descriptor(allow(READ_DATA, UNMAPPED)),
    "posix": None,
    "malformed": descriptor(allow(READ_DATA, EVERYONE))[:-6],
}
EXPECTED = {
    "ntacl-alice": {"public", "budget", "salaries", "alice-only", "open", "posix"},
    "ntacl-bob": {"public", "inherit-only", "open", "posix"},
    "ntacl-carol": {"public", "open", "posix"},
}


def build_share(root: Path, inject: Inject) -> dict[str, Path]:
    (root / "finance").mkdir(parents=True)
    root.chmod(0o755)  # the ingest root itself has no NT ACL here: its mode bits count
    docs: dict[str, Path] = {}
    for name, sentence in TOPICS.items():
        folder = root / "finance" if name in ("budget", "salaries") else root
        docs[name] = folder / f"{name}.txt"
        docs[name].write_text(sentence + "\n")
        docs[name].chmod(0o644)
    for name, blob in SHARE_ACLS.items():
        if blob is not None:
            inject(root / name.rstrip("/") if name.endswith("/") else docs[name], blob)
    return docs


def test_each_user_finds_what_the_share_s_nt_acls_let_them_read(
    tmp_path: Path, cifs_acl: Inject, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_ACCESS__SID_MAP", json.dumps(SID_MAP))
    settings = make_settings(tmp_path / "data")
    docs = build_share(tmp_path / "share", cifs_acl)
    ledger = Ledger(settings.ledger_path)
    ingestor = Ingestor(settings, embedder, build_store(settings), ledger)
    report = ingestor.run([str(tmp_path / "share")], workers=1)
    assert [f.path for f in report.failed] == [str(docs["malformed"])]
    assert report.failed[0].error.startswith(f"{UNREADABLE_PERMISSIONS}: system.cifs_acl: ")
    assert report.indexed == len(docs) - 1
    unmapped = ledger.get(str(docs["unmapped"]))
    assert unmapped is not None and unmapped.acl == frozenset({f"sid:{UNMAPPED}"})
    retriever = Retriever(embedder, ingestor._store, build_sparse(settings))
    by_path = {str(path): name for name, path in docs.items()}
    directory = UserDirectory(settings.users_path, {})
    for name, groups in APPLIANCE_USERS.items():
        directory.add(name, "a-long-password", groups)
    for name, expected in EXPECTED.items():
        scope = directory.get(name).scope
        seen: set[str] = set()
        for topic, sentence in TOPICS.items():
            found = {by_path[h.chunk.path] for h in retriever.search(sentence, scope, 20)}
            assert found <= expected, (name, topic)
            seen |= found
        assert seen == expected, name
    directory.close()
