"""Who may read a file on a share: the principals put on every chunk of it.

Principals: `user:NAME` (`uid:N` when the id has no name), `group:NAME` (`gid:N`), and
`everyone`; from NT ACLs also `sid:S-1-…` for a domain SID the host cannot name, which only
a directory user holding that SID matches (`appliance.directory`).
Names come from the host's `pwd`/`grp` (SSSD or winbind on the appliance).

What is read, for the file and for every folder from the ingest root down to the file's
folder (both included; a root that is a file has no folders), through the handles that
`ingest.share_files` opened (never by path: a link swapped in cannot lend its target's
permissions, nor its folder's): an NT ACL if there is one
(`system.cifs_acl` on an SMB mount, `system.ntfs_acl`, `security.NTACL`), else owner, owning
group, mode bits and the POSIX ACL (`system.posix_acl_access`, parsed here; without it the mode
bits are the ACL). The file needs `r` (NT: read data), each folder `x` (search; NT: traverse).

Who holds a right under an NT ACL (entries and SIDs as `ingest.ntacl` reads them):
- no DACL: `everyone`; otherwise the principal of each SID an applicable allow names:
  `everyone`, `user:U`, `group:G`, or `sid:S` (SIDs held by no signed-in user, such as SYSTEM,
  and other well-known classes such as BUILTIN\\Administrators give nothing);
- if applicable denies name SIDs other than those held by no signed-in user: a deny naming a
  class whose members are unknown (everyone, a well-known class, a group the host does not
  know, an unresolved SID) leaves nobody; otherwise `everyone`, `sid:` and groups the host does
  not know are dropped, each group the host knows is replaced by its members (`user:M`),
  then each denied user goes, and so does each user whose host groups (`getgrouplist`)
  include a denied group or cannot be listed.

Who holds a permission bit on one object, following POSIX's check (the owner entry first,
then named users, then the owning and named groups, then `other`; the ACL mask limits named
users and all group entries):
- `user:OWNER` if the owner entry has the bit; `user:U` for each named user whose masked
  entry has it;
- `group:G` for the owning group and each named group whose masked entry has it;
- `everyone` only if `other` has the bit *and no entry above lacks it*: POSIX stops at the
  first class that matches, so an owner, named user or group member without the bit is
  refused although `other` has it, and a set of principals cannot say "everyone except";
- if the owner or a named user lacks the bit, each granting group is replaced by its members
  other than those users (`user:M`), since `group:G` would let them in.
These sets are never larger than what the file system allows (fail closed): the cases a set
of principals cannot express lose access rather than leak it.

Effective principals: the meet of the file's read set with each folder's traverse set, taken
pair by pair (a user who reads or traverses by several routes keeps every route):

    a ∧ b                       result
    everyone ∧ p                p
    p ∧ p                       p
    user:U ∧ group:G            user:U if U is a member of G, else nothing
    group:G ∧ group:H (G ≠ H)   user:M for each member M of both
    user:U ∧ user:V (U ≠ V)     nothing

Membership: the user's primary group or the group's listed members on the host; a group the
host lists no members of yields nobody.

Files read over the SMB protocol (`ingest.smb`) are judged by their own security descriptor
alone (`descriptor_readers`): Windows grants every user "bypass traverse checking", so the
folders above a file do not gate reading it, and inheritance is already written into the
file's DACL. No DACL lets `everyone` in, an empty one nobody. Each SID an applicable allow
names becomes: `everyone` (Everyone, Authenticated Users), the principal `access.sid_map`
gives it, or `sid:S-1-5-21-…` for a domain SID (not looked up: directory users hold their
SIDs as `sid:` principals when they sign in); SYSTEM, CREATOR OWNER and other well-known SIDs
give nothing. Each SID a deny names becomes the entry `deny:` and that principal
(`deny:sid:S-1-5-21-…-1107`, `deny:everyone`), which the search filters read as "a holder of
the principal never reads this"; a deny of a SID nobody signs in as (SYSTEM, CREATOR OWNER,
services) changes nothing, and a deny of a class whose members are unknown here
(BUILTIN\\Users and other well-known SIDs) leaves nobody.

Permissions that cannot be read (getxattr failing other than "no such attribute", an ACL
that cannot be parsed, an NT ACL with entries that are not mapped) raise
`UnreadablePermissions`: the pipeline then does not index the file and removes what it had
indexed.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ingest import ntacl
from ingest.errors import IngestError
from ingest.share_files import Handle, Identity, OpenedFile, ShareOpener
from retrieval.access import EVERYONE, SIDS_UNKNOWN, denied
from settings import Settings

# Every failure reason this module gives starts so; the pipeline retries such files each run.
UNREADABLE_PERMISSIONS = "permissions unreadable"

POSIX_ACL_ATTRIBUTE = "system.posix_acl_access"
# NTFS ACLs as SMB clients and servers expose them: cifs.ko, ntfs-3g, Samba's own store.
NT_ACL_ATTRIBUTES = ("system.cifs_acl", "system.ntfs_acl", "security.NTACL")

READ, WRITE, EXECUTE = 4, 2, 1
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_ABSENT = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)
_FIX_ACCESS = "let the ingest account read them, then run rag ingest again"
_FIX_NT_ACL = "check the file's permissions on the file server, then run rag ingest again"


class UnreadablePermissions(IngestError):
    """Who may read a file cannot be known: the file must not be indexed."""

    def __init__(self, detail: str, next_step: str = _FIX_ACCESS) -> None:
        super().__init__(f"{UNREADABLE_PERMISSIONS}: {detail}; {next_step}")
        self.detail = detail


class UninterpretableAcl(UnreadablePermissions):
    """An ACL exists in a form this module cannot map to principals."""


class Principal(NamedTuple):
    kind: str  # "user", "group", "sid" or EVERYONE
    id: int = -1  # the host's uid or gid; -1 when the host has no such account
    name: str = ""  # the name (or SID) when the host has no such account


ALL = Principal(EVERYONE)


@dataclass(frozen=True)
class PosixAcl:
    """An access ACL; permissions are rwx bit sets (4, 2, 1)."""

    owner: int
    owning_group: int
    other: int
    named_users: tuple[tuple[int, int], ...] = ()  # (uid, permissions)
    named_groups: tuple[tuple[int, int], ...] = ()  # (gid, permissions)
    mask: int | None = None

    @classmethod
    def from_mode(cls, mode: int) -> PosixAcl:
        return cls(owner=(mode >> 6) & 7, owning_group=(mode >> 3) & 7, other=mode & 7)


def parse_posix_acl(blob: bytes) -> PosixAcl:
    """The ACL of a `system.posix_acl_access` value (little-endian: a u32 version 2, then
    entries of tag u16, permissions u16, id u32); UninterpretableAcl when malformed."""
    if len(blob) < _HEADER.size or (len(blob) - _HEADER.size) % _ENTRY.size:
        raise UninterpretableAcl(f"the POSIX ACL has a malformed length ({len(blob)} bytes)")
    (version,) = _HEADER.unpack_from(blob)
    if version != _ACL_VERSION:
        raise UninterpretableAcl(f"the POSIX ACL has unknown version {version}")
    single: dict[int, int] = {}
    named: dict[int, dict[int, int]] = {_USER: {}, _GROUP: {}}
    for tag, permissions, qualifier in _ENTRY.iter_unpack(blob[_HEADER.size :]):
        if permissions & ~7:
            raise UninterpretableAcl(f"the POSIX ACL has unknown permission bits {permissions}")
        if tag in named:
            if qualifier in named[tag]:
                raise UninterpretableAcl(f"the POSIX ACL names id {qualifier} twice")
            named[tag][qualifier] = permissions
        elif tag in (_USER_OBJ, _GROUP_OBJ, _MASK, _OTHER):
            if tag in single:
                raise UninterpretableAcl(f"the POSIX ACL has entry tag {tag} twice")
            single[tag] = permissions
        else:
            raise UninterpretableAcl(f"the POSIX ACL has unknown entry tag {tag}")
    missing = {_USER_OBJ, _GROUP_OBJ, _OTHER} - set(single)
    if missing or ((named[_USER] or named[_GROUP]) and _MASK not in single):
        raise UninterpretableAcl("the POSIX ACL lacks a required entry")
    return PosixAcl(
        owner=single[_USER_OBJ],
        owning_group=single[_GROUP_OBJ],
        other=single[_OTHER],
        named_users=tuple(sorted(named[_USER].items())),
        named_groups=tuple(sorted(named[_GROUP].items())),
        mask=single.get(_MASK),
    )


class ShareAccess:
    """Effective read principals of files under ingest roots, following the rule in the
    module's docstring. Folder results (by device and inode) and id look-ups are cached: use
    one per run."""

    def __init__(self, sid_map: Mapping[str, str] | None = None) -> None:
        """`sid_map`: SID → principal for NT ACLs; None takes `access.sid_map` from the
        settings when the first NT ACL is met."""
        self._sid_map = sid_map
        self._sids: ntacl.SidResolver | None = None
        self._host_groups: dict[int, frozenset[int] | None] = {}
        self._own: dict[tuple[Identity, int], frozenset[Principal] | UnreadablePermissions] = {}
        self._traverse: dict[tuple[Identity, ...], frozenset[Principal]] = {}
        self._members: dict[int, frozenset[int]] = {}
        self._names: dict[Principal, str] = {}

    def principals(self, path: str, root: str) -> frozenset[str]:
        """Who may read the file `path` found under the ingest `root`, opened as a run opens
        it (`ingest.share_files`). Raises UnreadablePermissions, and what the opener raises."""
        with ShareOpener(root) as opener, opener.open(path) as opened:
            return self.readers(opened)

    def readers(self, opened: OpenedFile) -> frozenset[str]:
        """Who may read the opened file: read from its handle and its folders' handles, never
        from a path. Raises UnreadablePermissions."""
        readers = self._grantees(opened.file, READ)
        if opened.folders:
            readers = self._meet(readers, self._traversers(opened.folders))
        return frozenset(self._name(p) for p in readers)

    def _traversers(self, folders: Sequence[Handle]) -> frozenset[Principal]:
        """Who may search every folder from the root down to the last of `folders`."""
        key = tuple(folder.identity for folder in folders)
        if key not in self._traverse:
            own = self._cached_grantees(folders[-1], EXECUTE)
            if len(folders) == 1:
                self._traverse[key] = own
            else:
                self._traverse[key] = self._meet(self._traversers(folders[:-1]), own)
        return self._traverse[key]

    def _cached_grantees(self, folder: Handle, bit: int) -> frozenset[Principal]:
        key = (folder.identity, bit)
        if key not in self._own:
            try:
                self._own[key] = self._grantees(folder, bit)
            except UnreadablePermissions as exc:
                self._own[key] = exc
        found = self._own[key]
        if isinstance(found, UnreadablePermissions):
            raise found
        return found

    def _grantees(self, handle: Handle, bit: int) -> frozenset[Principal]:
        where = f" of folder {handle.path}" if bit == EXECUTE else ""
        for attribute in NT_ACL_ATTRIBUTES:
            nt_acl = _attribute(handle, attribute, where)
            if nt_acl is not None:
                return self.nt_acl_grantees(attribute, nt_acl, bit, where)
        blob = _attribute(handle, POSIX_ACL_ATTRIBUTE, where)
        try:
            acl = PosixAcl.from_mode(handle.st.st_mode) if blob is None else parse_posix_acl(blob)
        except UninterpretableAcl as exc:
            raise UninterpretableAcl(exc.detail + where) from exc
        return self._holders(acl, handle.st.st_uid, handle.st.st_gid, bit)

    def nt_acl_grantees(
        self, attribute: str, blob: bytes, bit: int, where: str = ""
    ) -> frozenset[Principal]:
        """Who holds `bit` (READ or EXECUTE) under the NT ACL in `attribute`, by the rule in
        the module's docstring. Raises UninterpretableAcl."""
        right = ntacl.TRAVERSE if bit == EXECUTE else ntacl.READ
        try:
            entries = ntacl.named(ntacl.read_descriptor(attribute, blob), right)
        except ntacl.NtAclError as exc:
            raise UninterpretableAcl(f"{attribute}{where}: {exc}", _FIX_NT_ACL) from exc
        if entries.allowed is None:
            return frozenset({ALL})
        accounts = self._accounts()
        granted = {_principal(accounts.resolve(sid)) for sid in entries.allowed}
        denied = {accounts.resolve(sid) for sid in entries.denied} - {ntacl.SERVICE}
        holders = frozenset(p for p in granted if p is not None)
        return self._without(holders, denied) if denied else holders

    def _accounts(self) -> ntacl.SidResolver:
        if self._sids is None:
            if self._sid_map is None:
                self._sid_map = Settings().access.sid_map
            self._sids = ntacl.SidResolver(self._sid_map)
        return self._sids

    def _without(
        self, holders: frozenset[Principal], denied: set[ntacl.Account]
    ) -> frozenset[Principal]:
        """The users among `holders` that no denied account can include."""
        if any(_members_unknown(a) for a in denied):
            return frozenset()
        users = {p for p in holders if p.kind == "user"}
        for group in (p for p in holders if p.kind == "group" and p.id >= 0):
            users |= {Principal("user", uid) for uid in self._members_of(group.id)}
        users -= {_principal(a) for a in denied if a.kind == "user"}
        refused_groups = {a.id for a in denied if a.kind == "group"}
        if refused_groups:
            users = {u for u in users if not self._may_belong(u, refused_groups)}
        return frozenset(users)

    def _may_belong(self, user: Principal, gids: set[int]) -> bool:
        if user.id < 0:
            return True
        if user.id not in self._host_groups:
            self._host_groups[user.id] = _host_groups(user.id)
        groups = self._host_groups[user.id]
        return groups is None or bool(groups & gids)

    def _holders(self, acl: PosixAcl, uid: int, gid: int, bit: int) -> frozenset[Principal]:
        mask = 7 if acl.mask is None else acl.mask
        users: set[int] = set()
        refused_users: set[int] = set()
        groups: set[int] = set()
        some_group_refused = False
        (users if acl.owner & bit else refused_users).add(uid)
        for user, permissions in acl.named_users:
            if user != uid:  # a named entry for the owner never applies: the owner entry does
                (users if permissions & mask & bit else refused_users).add(user)
        for group, permissions in [(gid, acl.owning_group), *acl.named_groups]:
            if permissions & mask & bit:
                groups.add(group)
            else:
                some_group_refused = True
        holders = {Principal("user", u) for u in users}
        if refused_users:
            for group in groups:
                holders |= {Principal("user", m) for m in self._members_of(group) - refused_users}
        else:
            holders |= {Principal("group", g) for g in groups}
        if acl.other & bit and not refused_users and not some_group_refused:
            holders.add(ALL)
        return frozenset(holders)

    def _meet(self, a: frozenset[Principal], b: frozenset[Principal]) -> frozenset[Principal]:
        return frozenset(p for x in a for y in b for p in self._meet_one(x, y))

    def _meet_one(self, x: Principal, y: Principal) -> set[Principal]:
        if x == y or y == ALL:
            return {x}
        if x == ALL:
            return {y}
        if x.kind == y.kind == "user" or "sid" in (x.kind, y.kind):
            return set()
        if x.kind == y.kind == "group":
            both = self._members_of(x.id) & self._members_of(y.id)
            return {Principal("user", uid) for uid in both}
        user, group = (x, y) if x.kind == "user" else (y, x)
        return {user} if user.id in self._members_of(group.id) else set()

    def _members_of(self, gid: int) -> frozenset[int]:
        """Uids of the group's members on this host: listed members and primary members."""
        if gid < 0:
            return frozenset()
        if gid not in self._members:
            uids = {entry.pw_uid for entry in pwd.getpwall() if entry.pw_gid == gid}
            try:
                listed = grp.getgrgid(gid).gr_mem
            except KeyError:
                listed = []
            for name in listed:
                try:
                    uids.add(pwd.getpwnam(name).pw_uid)
                except KeyError:
                    continue
            self._members[gid] = frozenset(uids)
        return self._members[gid]

    def _name(self, principal: Principal) -> str:
        if principal not in self._names:
            self._names[principal] = _render(principal)
        return self._names[principal]


def _attribute(handle: Handle, name: str, where: str) -> bytes | None:
    """The extended attribute's value, read through the handle; None when the file has none
    or the file system has no such attributes."""
    try:
        return os.getxattr(handle.fd, name)
    except OSError as exc:
        if exc.errno in _ABSENT:
            return None
        raise UnreadablePermissions(f"cannot read {name}{where} ({exc.strerror})") from exc


def _principal(account: ntacl.Account) -> Principal | None:
    """The principal that holds an NT ACL's account; None when no signed-in user does."""
    if account.kind == "everyone":
        return ALL
    if account.kind in ("user", "group"):
        return Principal(account.kind, account.id, "" if account.id >= 0 else account.name)
    if account.kind == "unknown" and account.name.startswith(ntacl.DOMAIN_PREFIX):
        return Principal("sid", name=account.name)
    return None


def _members_unknown(account: ntacl.Account) -> bool:
    """Whether a deny of `account` may refuse users this module cannot name: everyone, a
    well-known class, an unresolved SID, a group the host does not know."""
    return account.kind not in ("user", "group") or (account.kind == "group" and account.id < 0)


def _host_groups(uid: int) -> frozenset[int] | None:
    """The host's groups of the user with `uid` (winbind includes nested domain groups);
    None when they cannot be listed."""
    try:
        entry = pwd.getpwuid(uid)
        return frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except (KeyError, OSError):
        return None


def _render(principal: Principal) -> str:
    if principal == ALL:
        return EVERYONE
    if principal.name:
        return f"{principal.kind}:{principal.name}"
    try:
        if principal.kind == "user":
            return f"user:{pwd.getpwuid(principal.id).pw_name}"
        return f"group:{grp.getgrgid(principal.id).gr_name}"
    except KeyError:
        return f"{'uid' if principal.kind == 'user' else 'gid'}:{principal.id}"


def descriptor_readers(descriptor: bytes, sid_map: Mapping[str, str]) -> frozenset[str]:
    """The ACL of a file read over SMB, from its own self-relative security descriptor (as
    QUERY_INFO returns it), by the rule in the module's docstring: the principals allowed to
    read, and a `deny:` entry for each principal refused. Raises UninterpretableAcl."""
    try:
        entries = ntacl.named(ntacl.parse_descriptor(descriptor), ntacl.READ)
    except ntacl.NtAclError as exc:
        raise UninterpretableAcl(f"the security descriptor: {exc}", _FIX_NT_ACL) from exc
    if entries.allowed is None:
        return frozenset({EVERYONE})
    acl = {p for sid in entries.allowed if (p := _sid_principal(sid, sid_map)) is not None}
    for sid in entries.denied:
        refused = _sid_principal(sid, sid_map)
        if refused is not None:
            acl.add(denied(refused))
            if refused.startswith("sid:"):
                # Users whose SIDs are unknown (local, single sign-on) may be the one refused.
                acl.add(denied(SIDS_UNKNOWN))
        elif not _held_by_nobody(sid):
            return frozenset()  # a class whose members are unknown here: fail closed
    return frozenset(acl)


def _sid_principal(sid: str, sid_map: Mapping[str, str]) -> str | None:
    """The principal a signed-in user holds for `sid`; None for a well-known SID."""
    if sid in sid_map:
        return sid_map[sid]
    if sid in ntacl.EVERYONE_SIDS:
        return EVERYONE
    if sid.startswith(ntacl.DOMAIN_PREFIX):
        return f"sid:{sid}"
    return None


def _held_by_nobody(sid: str) -> bool:
    return sid in ntacl.SERVICE_SIDS or sid.startswith(ntacl.SERVICE_PREFIXES)
