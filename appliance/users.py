"""The appliance's user directory: names, groups, password hashes, roles.

A user's principals are `user:NAME`, `group:G` for each group, `group:S` for each share group
S that the setting `access.group_map` maps one of its groups to, `everyone`, and, for a user
of an Active Directory (`appliance.directory`), `sid:S-…` for their own and each of their
groups' security identifiers (which NTFS ACLs name). The
directory applies the mapping to every user it returns, so sign-in, `--user` and the UI's
pages all see it.

Passwords are hashed with scrypt (RFC 7914) and a per-user salt at `PASSWORD_COST`
(N = 2^17, r = 8, p = 1: OWASP's guidance), stored as `scrypt$ln=17,r=8,p=1$SALT$DIGEST` so
that each hash carries its own cost. A hash of an older cost (among them the first format,
`scrypt$SALT$DIGEST` at N = 2^14) still verifies, and is replaced by one at the current cost
when its user next signs in. A name nobody has is checked against one dummy hash of the
current cost, and a wrong password against an older hash costs a current check as well, so
the time a refusal takes does not tell which names exist. Each hash takes 128 MiB; at most
`_PARALLEL_HASHES` are computed at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from appliance.errors import InvalidUser, UnknownUser
from retrieval.access import EVERYONE, SIDS_UNKNOWN, Scope
from settings import Settings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class ScryptCost:
    log2_n: int
    r: int
    p: int

    def encoded(self) -> str:
        return f"ln={self.log2_n},r={self.r},p={self.p}"

    @property
    def memory_bytes(self) -> int:
        return 128 * self.r * ((1 << self.log2_n) + self.p + 2)


# The cost of every new hash. Deliberately not a setting: nothing may lower it in production.
PASSWORD_COST = ScryptCost(log2_n=17, r=8, p=1)
# The cost of the first format, `scrypt$SALT$DIGEST`.
_LEGACY_COST = ScryptCost(log2_n=14, r=8, p=1)
# A stored hash asking for more than this is refused unchecked: a doctored users file must
# not make a sign-in take gigabytes or minutes.
_MAX_COST = ScryptCost(log2_n=18, r=8, p=2)
_DIGEST_BYTES = 32
_PARALLEL_HASHES = 4
_hashing = threading.BoundedSemaphore(_PARALLEL_HASHES)
_ENCODED_COST = re.compile(r"^ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name          TEXT PRIMARY KEY,
    groups        TEXT NOT NULL,
    admin         INTEGER NOT NULL,
    password_hash TEXT NOT NULL
);
"""

_Rows = list[tuple[Any, ...]]
GroupMap = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    admin: bool
    share_groups: tuple[str, ...] = ()  # held through `access.group_map`, never stored
    # A directory user's security identifiers (`S-1-5-21-…`): their own and their groups'.
    sids: tuple[str, ...] = ()
    # A local admin signed in while the organisation's directory signs users in.
    break_glass: bool = False

    @property
    def principals(self) -> frozenset[str]:
        groups = (*self.groups, *self.share_groups)
        sids = [f"sid:{sid}" for sid in self.sids] or [SIDS_UNKNOWN]
        return frozenset({f"user:{self.name}", EVERYONE, *(f"group:{g}" for g in groups), *sids})

    @property
    def scope(self) -> Scope:
        return Scope.of(self.principals)

    def reading_scope(self, admins_read_everything: bool) -> Scope:
        """What the user may search and read: their principals', or everything for an admin
        when the appliance is configured so."""
        return Scope.operator() if self.admin and admins_read_everything else self.scope

    def as_json(self) -> dict[str, object]:
        shown: dict[str, object] = {"user": self.name, "groups": list(self.groups),
                                    "admin": self.admin}  # fmt: skip
        if self.sids:
            shown["sids"] = list(self.sids)
        if self.break_glass:
            shown["break_glass"] = True
        return shown


def _scrypt(password: str, salt: bytes, cost: ScryptCost) -> bytes:
    with _hashing:
        return hashlib.scrypt(
            password.encode(), salt=salt, n=2**cost.log2_n, r=cost.r, p=cost.p,
            maxmem=cost.memory_bytes + 2**20, dklen=_DIGEST_BYTES,
        )  # fmt: skip


def hash_password(password: str) -> str:
    """A salted scrypt hash of `password` at `PASSWORD_COST`, recording that cost."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, PASSWORD_COST)
    return f"scrypt${PASSWORD_COST.encoded()}${salt.hex()}${digest.hex()}"


def _parse_hash(stored: str) -> tuple[ScryptCost, bytes, str] | None:
    """(cost, salt, digest in hex) of a stored hash, or None when it is not one of ours."""
    parts = stored.split("$")
    if len(parts) == 3 and parts[0] == "scrypt":
        cost, (_, salt_hex, digest_hex) = _LEGACY_COST, parts
    elif len(parts) == 4 and parts[0] == "scrypt" and (found := _ENCODED_COST.match(parts[1])):
        cost = ScryptCost(*(int(value) for value in found.groups()))
        salt_hex, digest_hex = parts[2], parts[3]
    else:
        return None
    within = (
        _LEGACY_COST.log2_n <= cost.log2_n <= _MAX_COST.log2_n
        and 1 <= cost.r <= _MAX_COST.r
        and 1 <= cost.p <= _MAX_COST.p
    )
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return None
    return (cost, salt, digest_hex) if within else None


def verify_password(password: str, stored: str) -> bool:
    parsed = _parse_hash(stored)
    if parsed is None:
        return False
    cost, salt, digest_hex = parsed
    return hmac.compare_digest(_scrypt(password, salt, cost).hex(), digest_hex)


def needs_rehash(stored: str) -> bool:
    """Whether `stored` was hashed at another cost than `PASSWORD_COST`."""
    parsed = _parse_hash(stored)
    return parsed is None or parsed[0] != PASSWORD_COST


@cache
def _nobody_hash(cost: ScryptCost) -> str:
    """What a name nobody has is checked against: one hash of the current cost whose digest
    no password gives (random bytes, not computed), so it costs nothing to make."""
    return f"scrypt${cost.encoded()}${secrets.token_hex(16)}${secrets.token_hex(_DIGEST_BYTES)}"


def share_groups(groups: Sequence[str], group_map: GroupMap) -> tuple[str, ...]:
    """The share groups that `groups` map to, other than the groups themselves."""
    mapped = {share for group in groups for share in group_map.get(group, ())}
    return tuple(sorted(mapped - set(groups)))


class UserDirectory:
    def __init__(self, path: Path, group_map: GroupMap | None = None) -> None:
        """`group_map`: directory group → share groups; None takes `access.group_map` from
        the settings in the environment, the same ones every entry point reads."""
        if group_map is None:
            group_map = Settings().access.group_map
        self._group_map = {group: tuple(shares) for group, shares in group_map.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the UI's sessions (threads); each statement is atomic.
        self._connection = sqlite3.connect(
            path, timeout=30, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        self._connection.executescript(_SCHEMA)

    def add(self, name: str, password: str, groups: list[str], admin: bool = False) -> User:
        """Create the user, or replace its password, groups and role."""
        if not _NAME.match(name):
            raise InvalidUser(f"invalid user name {name!r}: use letters, digits, . _ @ -")
        for group in groups:
            if not _NAME.match(group):
                raise InvalidUser(f"invalid group name {group!r}: use letters, digits, . _ @ -")
        if len(password) < 8:
            raise InvalidUser("password too short: use at least 8 characters")
        user = self._user(name, sorted(set(groups)), admin)
        self._execute(
            "INSERT INTO users (name, groups, admin, password_hash) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET groups=excluded.groups, admin=excluded.admin, "
            "password_hash=excluded.password_hash",
            (name, json.dumps(user.groups), int(admin), hash_password(password)),
        )
        return user

    def get(self, name: str) -> User:
        rows = self._execute("SELECT name, groups, admin FROM users WHERE name = ?", (name,))
        row = rows[0] if rows else None
        if row is None:
            raise UnknownUser(f"unknown user {name!r}; add it with `rag users add {name}`")
        return self._user(row[0], json.loads(row[1]), bool(row[2]))

    def find(self, name: str) -> User | None:
        """The user called `name`, or None when there is none."""
        try:
            return self.get(name)
        except UnknownUser:
            return None

    def authenticate(self, name: str, password: str) -> User | None:
        """The user, when `password` is theirs; None for a wrong password or an unknown name,
        which take the same time. A right password stored at an older cost is rehashed."""
        rows = self._execute("SELECT password_hash FROM users WHERE name = ?", (name,))
        if not rows:
            verify_password(password, _nobody_hash(PASSWORD_COST))
            return None
        stored: str = rows[0][0]
        matches = verify_password(password, stored)
        if needs_rehash(stored):
            if matches:
                # Unless the password was changed meanwhile.
                self._execute(
                    "UPDATE users SET password_hash = ? WHERE name = ? AND password_hash = ?",
                    (hash_password(password), name, stored),
                )
            else:
                verify_password(password, _nobody_hash(PASSWORD_COST))  # as slow as a current one
        return self.find(name) if matches else None

    def list(self) -> list[User]:
        rows = self._execute("SELECT name, groups, admin FROM users ORDER BY name")
        return [self._user(r[0], json.loads(r[1]), bool(r[2])) for r in rows]

    def remove(self, name: str) -> None:
        """Delete the user; an unknown name is an error, so a typo is not silently ignored."""
        self.get(name)
        self._execute("DELETE FROM users WHERE name = ?", (name,))

    def _user(self, name: str, groups: Sequence[str], admin: bool) -> User:
        return User(name, tuple(groups), admin, share_groups(groups, self._group_map))

    def _execute(self, sql: str, parameters: tuple[object, ...] = ()) -> _Rows:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def close(self) -> None:
        self._connection.close()


def build_user_directory(settings: Settings) -> UserDirectory:
    return UserDirectory(settings.users_path, settings.access.group_map)
