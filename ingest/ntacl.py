"""NTFS ACLs as SMB shares expose them: the security descriptor, and who its SIDs are.

Attributes read: `system.cifs_acl` (a Linux cifs mount) and `system.ntfs_acl` (ntfs-3g) hold a
self-relative SECURITY_DESCRIPTOR ([MS-DTYP] 2.4.6, little endian): revision u8 (1), sbz1 u8,
control u16, then u32 offsets of owner, group, SACL and DACL. `security.NTACL` holds Samba's
`xattr_NTACL` (librpc/idl/xattr.idl, NDR): version u16, the same value again as the union's
switch, a u32 pointer, then the descriptor itself (version 1) or a struct pointing to it
(version 2: u32 pointer, 16-byte hash; 3: u32 pointer, u16 hash type, 64-byte hash;
4: as 3, then a NUL-terminated UTF-8 description, an NTTIME aligned to 4, a 64-byte hash),
the descriptor following, aligned to 4. NDR counts the descriptor's offsets from the start
of the attribute, not from the descriptor (as read from the files Samba 4.17 writes).

Which entries count, for one object:
- only the DACL is read; no DACL (control lacks SE_DACL_PRESENT, or its offset is 0) lets
  everyone in; a DACL without entries lets nobody in;
- inherit-only entries (flag 0x08) do not apply to the object and are skipped; any other
  entry that is not a plain allow (type 0) or deny (type 1), such as an object or callback
  entry, makes the ACL uninterpretable;
- an allow grants read when its mask has FILE_READ_DATA, GENERIC_READ, GENERIC_ALL or
  MAXIMUM_ALLOWED, and traverse when it has FILE_TRAVERSE, GENERIC_EXECUTE or GENERIC_ALL;
- a deny counts against read when its mask shares a bit with those or with the rest of
  FILE_GENERIC_READ (FILE_READ_EA, FILE_READ_ATTRIBUTES, READ_CONTROL, SYNCHRONIZE), against
  traverse when it has FILE_TRAVERSE, GENERIC_EXECUTE, GENERIC_ALL or MAXIMUM_ALLOWED; the
  order of entries is ignored, so a deny wins over every allow (Windows lets an allow placed
  before a deny win: this can only refuse more than Windows does).

Who a SID is (`SidResolver`), first match wins: the `access.sid_map` setting; Everyone
(S-1-1-0) and Authenticated Users (S-1-5-11) are everyone; SYSTEM, LOCAL SERVICE, NETWORK
SERVICE, CREATOR OWNER, CREATOR GROUP and service SIDs (S-1-5-80-…) are held by no signed-in
user; a domain SID (S-1-5-21-…) is looked up with winbind (`wbinfo`: its type, then its uid or
gid); any other well-known SID (BUILTIN\\Administrators, NETWORK, …) is a class whose members
are unknown here, and so is a domain SID winbind cannot map.
"""

from __future__ import annotations

import grp
import pwd
import shutil
import struct
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

SAMBA_NTACL_ATTRIBUTE = "security.NTACL"

FILE_READ_DATA = 0x00000001
FILE_READ_EA = 0x00000008
FILE_TRAVERSE = 0x00000020
FILE_READ_ATTRIBUTES = 0x00000080
READ_CONTROL = 0x00020000
SYNCHRONIZE = 0x00100000
MAXIMUM_ALLOWED = 0x02000000
GENERIC_ALL = 0x10000000
GENERIC_EXECUTE = 0x20000000
GENERIC_READ = 0x80000000

ACCESS_ALLOWED, ACCESS_DENIED = 0, 1
INHERIT_ONLY = 0x08
SE_DACL_PRESENT = 0x0004

_DESCRIPTOR = struct.Struct("<BBHIIII")
_ACL = struct.Struct("<BBHHH")
_ACE = struct.Struct("<BBHI")
_SID_HEADER = 8
_MAX_SUBAUTHORITIES = 15
_NTACL_HEADER = struct.Struct("<HHI")
_HASH_V3_END = 8 + 4 + 2 + 64  # header, pointer, hash type, hash
_WBINFO_TIMEOUT = 2.0

EVERYONE_SIDS = frozenset({"S-1-1-0", "S-1-5-11"})
# Accounts no signed-in user acts as; CREATOR OWNER/GROUP only stand in for others when an
# entry is inherited, never in an access check.
SERVICE_SIDS = frozenset({"S-1-5-18", "S-1-5-19", "S-1-5-20", "S-1-3-0", "S-1-3-1"})
SERVICE_PREFIXES = ("S-1-5-80-", "S-1-5-82-", "S-1-5-83-")
DOMAIN_PREFIX = "S-1-5-21-"

_WINBIND_USER_TYPES = frozenset({"1", "SID_NAME_USER"})
_WINBIND_GROUP_TYPES = frozenset(
    {"2", "4", "5", "SID_NAME_DOM_GRP", "SID_NAME_ALIAS", "SID_NAME_WKN_GRP"}
)


class NtAclError(ValueError):
    """The attribute does not hold a descriptor this module can read; the message says why."""


class Right(NamedTuple):
    grants: int  # an allow whose mask has one of these bits grants the right
    denies: int  # a deny whose mask has one of these bits refuses it


READ = Right(
    grants=FILE_READ_DATA | GENERIC_READ | GENERIC_ALL | MAXIMUM_ALLOWED,
    denies=FILE_READ_DATA | GENERIC_READ | GENERIC_ALL | MAXIMUM_ALLOWED | FILE_READ_EA
    | FILE_READ_ATTRIBUTES | READ_CONTROL | SYNCHRONIZE,
)  # fmt: skip
TRAVERSE = Right(
    grants=FILE_TRAVERSE | GENERIC_EXECUTE | GENERIC_ALL,
    denies=FILE_TRAVERSE | GENERIC_EXECUTE | GENERIC_ALL | MAXIMUM_ALLOWED,
)


class Ace(NamedTuple):
    type: int
    flags: int
    mask: int
    sid: str  # "" for entry types whose SID is not read


@dataclass(frozen=True)
class SecurityDescriptor:
    dacl: tuple[Ace, ...] | None  # None: no DACL, which lets everyone in


@dataclass(frozen=True)
class Named:
    """The SIDs a DACL allows and denies one right to; `allowed` None: everyone."""

    allowed: frozenset[str] | None
    denied: frozenset[str] = frozenset()


def read_descriptor(attribute: str, blob: bytes) -> SecurityDescriptor:
    """The descriptor an NT ACL attribute holds. Raises NtAclError."""
    if attribute == SAMBA_NTACL_ATTRIBUTE:
        return parse_descriptor(blob, _samba_descriptor_start(blob))
    return parse_descriptor(blob)


def _samba_descriptor_start(blob: bytes) -> int:
    """Where the self-relative descriptor of a `security.NTACL` value starts (versions 1
    to 4)."""
    if len(blob) < _NTACL_HEADER.size:
        raise NtAclError(f"the Samba NT ACL is truncated ({len(blob)} bytes)")
    version, level, pointer = _NTACL_HEADER.unpack_from(blob)
    if version != level or version not in (1, 2, 3, 4):
        raise NtAclError(f"the Samba NT ACL has unknown version {version}")
    start = _NTACL_HEADER.size  # version 1: the descriptor follows
    if version > 1 and pointer:  # a struct that points to the descriptor comes first
        pointer = _u32(blob, _NTACL_HEADER.size)
        start = 8 + 4 + 16 if version == 2 else _align4(_HASH_V3_END)
        if version == 4:
            start = _v4_start(blob)
    if not pointer:
        raise NtAclError("the Samba NT ACL holds no security descriptor")
    return start


def _v4_start(blob: bytes) -> int:
    end_of_description = blob.find(b"\0", _HASH_V3_END)
    if end_of_description < 0:
        raise NtAclError("the Samba NT ACL is truncated in its description")
    return _align4(_align4(end_of_description + 1) + 8 + 64)


def _align4(offset: int) -> int:
    return (offset + 3) & ~3


def _u32(blob: bytes, offset: int) -> int:
    if offset + 4 > len(blob):
        raise NtAclError(f"the Samba NT ACL is truncated ({len(blob)} bytes)")
    value: int = struct.unpack_from("<I", blob, offset)[0]
    return value


def parse_descriptor(blob: bytes, start: int = 0) -> SecurityDescriptor:
    """The DACL of the self-relative SECURITY_DESCRIPTOR at `start` in `blob`, whose offsets
    count from the start of `blob`. Raises NtAclError."""
    if len(blob) < start + _DESCRIPTOR.size:
        raise NtAclError(f"the security descriptor is truncated ({len(blob) - start} bytes)")
    revision, _sbz1, control, _owner, _group, _sacl, dacl = _DESCRIPTOR.unpack_from(blob, start)
    if revision != 1:
        raise NtAclError(f"the security descriptor has unknown revision {revision}")
    if not control & SE_DACL_PRESENT or dacl == 0:
        return SecurityDescriptor(dacl=None)
    return SecurityDescriptor(dacl=_parse_acl(blob, dacl, start))


def _parse_acl(blob: bytes, offset: int, start: int) -> tuple[Ace, ...]:
    if offset < start + _DESCRIPTOR.size or offset + _ACL.size > len(blob):
        raise NtAclError(f"the DACL offset {offset} lies outside the descriptor")
    revision, _sbz1, size, count, _sbz2 = _ACL.unpack_from(blob, offset)
    if revision not in (2, 4):
        raise NtAclError(f"the DACL has unknown revision {revision}")
    end = offset + size
    if size < _ACL.size or end > len(blob):
        raise NtAclError(f"the DACL's size {size} runs past the descriptor")
    aces: list[Ace] = []
    position = offset + _ACL.size
    for _ in range(count):
        if position + _ACE.size > end:
            raise NtAclError(f"the DACL is truncated after {len(aces)} of {count} entries")
        kind, flags, ace_size, mask = _ACE.unpack_from(blob, position)
        if ace_size < _ACE.size or position + ace_size > end:
            raise NtAclError(f"DACL entry {len(aces) + 1} has a bad size {ace_size}")
        plain = kind in (ACCESS_ALLOWED, ACCESS_DENIED)
        sid = parse_sid(blob, position + _ACE.size, position + ace_size) if plain else ""
        aces.append(Ace(kind, flags, mask, sid))
        position += ace_size
    return tuple(aces)


def parse_sid(blob: bytes, offset: int, end: int) -> str:
    """The SID at `offset`, which must end by `end`, as "S-1-5-21-…"."""
    if offset + _SID_HEADER > end:
        raise NtAclError("a SID is truncated")
    revision, count = blob[offset], blob[offset + 1]
    if revision != 1 or count > _MAX_SUBAUTHORITIES:
        raise NtAclError(f"a SID has revision {revision} and {count} subauthorities")
    if offset + _SID_HEADER + 4 * count > end:
        raise NtAclError("a SID is truncated")
    authority = int.from_bytes(blob[offset + 2 : offset + _SID_HEADER], "big")
    subauthorities = struct.unpack_from(f"<{count}I", blob, offset + _SID_HEADER)
    shown = str(authority) if authority < 2**32 else f"0x{authority:012X}"
    return "-".join(["S", "1", shown, *map(str, subauthorities)])


def named(descriptor: SecurityDescriptor, right: Right) -> Named:
    """The SIDs the descriptor's applicable entries allow and deny `right` to."""
    if descriptor.dacl is None:
        return Named(allowed=None)
    allowed: set[str] = set()
    denied: set[str] = set()
    for ace in descriptor.dacl:
        if ace.flags & INHERIT_ONLY:
            continue
        if ace.type == ACCESS_ALLOWED:
            if ace.mask & right.grants:
                allowed.add(ace.sid)
        elif ace.type == ACCESS_DENIED:
            if ace.mask & right.denies:
                denied.add(ace.sid)
        else:
            raise NtAclError(f"the DACL holds an entry of type {ace.type}, which is not mapped")
    return Named(frozenset(allowed), frozenset(denied))


class Account(NamedTuple):
    """Who a SID is. kind: "everyone"; "user" or "group" (`id` the host's uid or gid, -1 when
    the host has no such name); "service" (no signed-in user holds it); "unknown" (a class
    whose members are not known here; `name` is the SID)."""

    kind: str
    name: str = ""
    id: int = -1


SERVICE = Account("service")
EVERYONE = Account("everyone")


class SidResolver:
    """SIDs to accounts, following the module's docstring; answers are kept: one per run."""

    def __init__(self, sid_map: Mapping[str, str], wbinfo: str | None = None) -> None:
        self._sid_map = sid_map
        self._wbinfo = wbinfo if wbinfo is not None else shutil.which("wbinfo")
        self._known: dict[str, Account] = {}

    def resolve(self, sid: str) -> Account:
        if sid not in self._known:
            self._known[sid] = self._look_up(sid)
        return self._known[sid]

    def _look_up(self, sid: str) -> Account:
        if sid in self._sid_map:
            return account_of(self._sid_map[sid])
        if sid in EVERYONE_SIDS:
            return EVERYONE
        if sid in SERVICE_SIDS or sid.startswith(SERVICE_PREFIXES):
            return SERVICE
        if sid.startswith(DOMAIN_PREFIX):
            return self._winbind(sid) or Account("unknown", sid)
        return Account("unknown", sid)

    def _winbind(self, sid: str) -> Account | None:
        answer = self._ask_winbind("--sid-to-name", sid)
        if answer is None:
            return None
        kind_code = answer.rpartition(" ")[2]
        if kind_code in _WINBIND_USER_TYPES:
            kind, option = "user", "--sid-to-uid"
        elif kind_code in _WINBIND_GROUP_TYPES:
            kind, option = "group", "--sid-to-gid"
        else:
            return None
        number = self._ask_winbind(option, sid)
        return Account(kind, id=int(number)) if number and number.isdigit() else None

    def _ask_winbind(self, option: str, sid: str) -> str | None:
        if self._wbinfo is None:
            return None
        try:
            done = subprocess.run(
                [self._wbinfo, option, sid],
                capture_output=True,
                text=True,
                timeout=_WBINFO_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            self._wbinfo = None  # winbind is down or hangs: not asked again this run
            return None
        return done.stdout.strip() if done.returncode == 0 else None


def account_of(principal: str) -> Account:
    """The account an `access.sid_map` value (`everyone`, `user:NAME`, `group:NAME`) names."""
    if principal == "everyone":
        return EVERYONE
    kind, _, name = principal.partition(":")
    try:
        if kind == "user":
            return Account(kind, name, pwd.getpwnam(name).pw_uid)
        if kind == "group":
            return Account(kind, name, grp.getgrnam(name).gr_gid)
    except KeyError:
        return Account(kind, name)
    raise NtAclError(f"the SID map's value {principal!r} is not everyone, user:N or group:N")
