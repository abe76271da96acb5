"""The appliance's user directory: names, groups, password hashes, roles.

Passwords are hashed with scrypt (RFC 7914) and a per-user salt. A user's principals are
`user:NAME`, `group:G` for each group, `group:S` for each share group S that the setting
`access.group_map` maps one of its groups to, and `everyone`. The directory applies the
mapping to every user it returns, so sign-in, `--user` and the UI's pages all see it.
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
from pathlib import Path
from typing import Any

from retrieval.access import EVERYONE, Scope
from retrieval.errors import RetrievalError, UnknownUser
from settings import Settings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}

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


class InvalidUser(RetrievalError):
    pass


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    admin: bool
    share_groups: tuple[str, ...] = ()  # held through `access.group_map`, never stored

    @property
    def principals(self) -> frozenset[str]:
        groups = (*self.groups, *self.share_groups)
        return frozenset({f"user:{self.name}", EVERYONE, *(f"group:{g}" for g in groups)})

    @property
    def scope(self) -> Scope:
        return Scope.of(self.principals)

    def reading_scope(self, admins_read_everything: bool) -> Scope:
        """What the user may search and read: their principals', or everything for an admin
        when the appliance is configured so."""
        return Scope.operator() if self.admin and admins_read_everything else self.scope

    def as_json(self) -> dict[str, object]:
        return {"user": self.name, "groups": list(self.groups), "admin": self.admin}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), **_SCRYPT)
    return hmac.compare_digest(digest.hex(), digest_hex)


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

    def authenticate(self, name: str, password: str) -> User | None:
        rows = self._execute("SELECT password_hash FROM users WHERE name = ?", (name,))
        row = rows[0] if rows else None
        if row is None:
            verify_password(password, hash_password("timing-equaliser"))
            return None
        return self.get(name) if verify_password(password, row[0]) else None

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
