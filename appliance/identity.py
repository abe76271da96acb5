"""Who is signing in: identity providers, the guard that throttles and audits sign-ins, and
the check that keeps a session in step with the directory.

`IdentityProvider` is the seam. `LocalIdentity` checks names and passwords against the
appliance's own user directory (`rag users add`). An organisation's identity provider plugs in
as another implementation, chosen in the UI's composition root:

- OIDC (Keycloak, Microsoft Entra ID, ADFS): the UI runs the authorization-code flow with
  PKCE against the provider's issuer on the corporate network, validates the ID token
  (signature from the issuer's JWKS, `iss`, `aud`, `exp`, `nonce`), and returns
  `User(name=<preferred_username or upn claim>, groups=<the groups claim, each mapped to a
  share group>, admin=<membership of a configured admin group>)`. The group mapping is what
  makes the ACL filter work: a document readable by the share group `finance` is found by a
  user whose token carries the directory group mapped to `finance` (Entra ID sends group
  object ids, ADFS and Keycloak names; the mapping is a configured table). Such a provider
  has no password step: the token exchange signs users in (audited by the application
  layer), and its `authenticate` serves only local admins, as break-glass accounts.
- LDAP / Active Directory (`appliance.directory.LdapIdentity`): `authenticate` binds as the
  user, `lookup` reads the user and their groups (nested ones too) from the directory, and
  `refresh_seconds` says how long a session may go on the groups read last (a minute or so:
  a directory server is not asked on every click). The appliance's own admins remain
  break-glass accounts that sign in when the directory is down.

`appliance.sso.OidcIdentity` is the OIDC one. `build_identity` picks the provider from
`identity.provider`.

A provider that relies on a server says so by raising: `DirectoryUnavailable` when it cannot
ask it (the sign-in fails closed, outcome `unavailable`, audited as `login_failed` with the
reason, and not counted as a failure of the name or the address), `AccountRefused` when the
directory refuses the account whatever its password (locked, disabled, expired, its password
expired or to be changed: outcomes of those names, audited and counted as failures).

A signed-in session holds the `User` read at sign-in. `session_change` reads the user again
(the UI does so on every request, or once `refresh_seconds` have passed): a user who is gone,
or whose role or groups differ, has their session ended (`logout` audited with the reason).

`SignInGuard` throttles guessing. Each attempt is counted, in one SQLite transaction, before
the password is checked, so concurrent attempts cannot slip past the limits:

- a client address gets `max_failures` failed sign-ins (whatever the names) within the window;
  then it is refused until the window has passed;
- a name gets twice as many (from any address); then each further attempt for it waits, one
  minute after the first, twice as long after each further failure, at most the window. A
  name's failures are forgotten once it has had none for two windows.

So one address is refused at half a name's allowance: wrong passwords typed at one place do
not make the user wait elsewhere (unless kept up, slowly, over several windows), and a name is
never locked out, only made to wait for at most the window.

Refused attempts are not checked and not counted; a success clears the name's failures. Names
nobody has are throttled alike, so the throttling tells nothing about which names exist.
Every attempt is audited (`login`, `login_failed`, `login_locked`, with the client address;
`login` of a break-glass admin adds `"break_glass": true`, `login_failed` other than for a
wrong password adds `reason`).
A name that is not a user's is never stored as typed (it may be a password typed in the wrong
box): the audit log and the failure table hold `unknown:` and a keyed hash of it (HMAC-SHA256
with a secret created 0600 next to the failure table), the same for the same name.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from appliance.audit import AuditLog, build_audit
from appliance.errors import AccountRefused, DirectoryUnavailable
from appliance.sqlite import write_transaction
from appliance.users import User, UserDirectory, build_user_directory
from settings import Settings

# A name as typed is looked up at most this long.
_MAX_NAME_CHARS = 128
# The first wait of a name that has had too many failures; it doubles with each further one.
_FIRST_NAME_WAIT_SECONDS = 60.0
_KEY_BYTES = 32
_UNKNOWN_ADDRESS = "unknown"

_SCHEMA = """
DROP TABLE IF EXISTS sign_in_failures;
DROP TABLE IF EXISTS sign_in_locks;
CREATE TABLE IF NOT EXISTS sign_in_attempts (
    name    TEXT NOT NULL,
    address TEXT NOT NULL,
    at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sign_in_attempts_name ON sign_in_attempts (name, at);
CREATE INDEX IF NOT EXISTS sign_in_attempts_address ON sign_in_attempts (address, at);
CREATE TABLE IF NOT EXISTS sign_in_waits (key TEXT PRIMARY KEY, until REAL NOT NULL);
"""


class IdentityProvider(Protocol):
    # How long a session may go on the user as last read; 0: read on every request.
    refresh_seconds: float

    def authenticate(self, name: str, password: str) -> User | None:
        """The user these credentials belong to, or None: unknown name and wrong password
        are not told apart. Raises AccountRefused for an account that may not sign in now,
        DirectoryUnavailable when the directory cannot be asked."""

    def lookup(self, name: str) -> User | None:
        """The user called `name` as the directory has them now, or None when there is none.
        Raises DirectoryUnavailable when the directory cannot be asked."""


class LocalIdentity:
    """Users of the appliance's own directory (scrypt password hashes), re-read on every
    request: reading them is one SQLite query."""

    refresh_seconds = 0.0

    def __init__(self, directory: UserDirectory) -> None:
        self._directory = directory

    def authenticate(self, name: str, password: str) -> User | None:
        return self._directory.authenticate(name, password)

    def lookup(self, name: str) -> User | None:
        return self._directory.find(name)


SessionEnd = Literal["removed", "changed"]
SignOutReason = Literal["user", "expired", "removed", "changed"]


def session_change(provider: IdentityProvider, user: User) -> SessionEnd | None:
    """Why the session of `user` (as read at sign-in) must end now, or None: the user is gone
    from the directory, or their role or groups differ."""
    current = provider.lookup(user.name)
    if current is None:
        return "removed"
    return None if current == user else "changed"


# `locked`: throttled here (too many failures); `account_locked` and the other states of an
# account (errors.AccountState): refused by the directory; `unavailable`: the directory is down.
Outcome = Literal[
    "ok", "wrong", "locked", "unavailable", "account_locked", "password_expired",
    "password_must_change", "account_disabled", "account_expired",
]  # fmt: skip


@dataclass(frozen=True)
class SignInResult:
    outcome: Outcome
    user: User | None = None
    retry_after_minutes: int | None = None  # set when locked

    @property
    def message_id(self) -> str | None:
        """The UI text (ui.i18n) to show; None when signed in."""
        named = {"ok": None, "wrong": "wrong_password", "unavailable": "directory_unavailable"}
        return named.get(self.outcome, self.outcome)


@dataclass(frozen=True)
class _Refused:
    until: float
    throttled: Literal["address", "name"]


@dataclass(frozen=True)
class _Counted:
    attempt: int  # the row that counts this attempt as a failure until it succeeds
    name_failures: int
    waits: bool  # whether this attempt made the address or the name wait


class SignInGuard:
    """Signs users in through a provider, throttled per client address and per name (see the
    module's docstring)."""

    def __init__(
        self,
        path: Path,
        max_failures: int,
        lockout_minutes: int,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = path
        self._max_address_failures = max_failures
        self._max_name_failures = 2 * max_failures
        self._window = lockout_minutes * 60.0
        self._audit = audit
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._key = _load_or_create_key(sign_in_key_path(path))
        with self._db() as db:
            db.executescript(_SCHEMA)

    def sign_in(
        self, provider: IdentityProvider, name: str, password: str, address: str | None = None
    ) -> SignInResult:
        """`address`: the client's, as `client_address` gives it; None when not known."""
        name = name.strip()[:_MAX_NAME_CHARS]
        address = address or _UNKNOWN_ADDRESS
        try:
            known = provider.lookup(name) is not None
        except DirectoryUnavailable as exc:
            return self._unavailable(self.unknown_name(name), address, exc)
        who = name if known else self.unknown_name(name)
        now = self._clock()
        counted = self._count_attempt(who, address, now)
        if isinstance(counted, _Refused):
            minutes = max(1, math.ceil((counted.until - now) / 60))
            self._audit.record(
                who, "login_locked",
                {"retry_after_minutes": minutes, "address": address,
                 "throttled": counted.throttled},
            )  # fmt: skip
            return SignInResult("locked", retry_after_minutes=minutes)
        try:
            user = provider.authenticate(name, password)
        except DirectoryUnavailable as exc:
            self._uncount(who, address, counted.attempt, now)
            return self._unavailable(who, address, exc)
        except AccountRefused as exc:
            self._audit.record(exc.name, "login_failed", {
                "reason": exc.state, "failures": counted.name_failures, "locked": counted.waits,
                "address": address,
            })  # fmt: skip
            return SignInResult(exc.state)
        if user is None:
            self._audit.record(
                who, "login_failed",
                {"failures": counted.name_failures, "locked": counted.waits, "address": address},
            )  # fmt: skip
            return SignInResult("wrong")
        self._clear(who, address, counted.attempt, now)
        detail: dict[str, object] = {
            "groups": list(user.groups), "admin": user.admin, "address": address
        }  # fmt: skip
        if user.break_glass:
            detail["break_glass"] = True
        self._audit.record(user.name, "login", detail)
        return SignInResult("ok", user=user)

    def _unavailable(self, who: str, address: str, exc: DirectoryUnavailable) -> SignInResult:
        self._audit.record(who, "login_failed", {
            "reason": "directory_unavailable", "error": str(exc), "address": address,
        })  # fmt: skip
        return SignInResult("unavailable")

    def sign_out(self, name: str, reason: SignOutReason = "user") -> None:
        self._audit.record(name, "logout", {"reason": reason})

    def unknown_name(self, name: str) -> str:
        """How a name that is no user's is logged and counted: never as typed."""
        digest = hmac.new(self._key, name.encode(), hashlib.sha256).hexdigest()
        return f"unknown:{digest[:16]}"

    def _count_attempt(self, who: str, address: str, now: float) -> _Refused | _Counted:
        """Refuse the attempt, or count it as a failure (until it succeeds) and set the waits
        it brings about: one transaction, so concurrent attempts are counted one by one."""
        with self._transaction() as db:
            since = now - self._window
            # A name's failures are forgotten once it has had none for two windows (the
            # longest wait and one more), so its wait keeps growing while someone keeps guessing.
            db.execute(
                "DELETE FROM sign_in_attempts WHERE name IN (SELECT name FROM sign_in_attempts "
                "GROUP BY name HAVING max(at) <= ?)",
                (now - 2 * self._window,),
            )
            db.execute("DELETE FROM sign_in_waits WHERE until <= ?", (now,))
            waits = db.execute(
                "SELECT key, until FROM sign_in_waits WHERE key IN (?, ?) ORDER BY until DESC",
                (f"address:{address}", f"name:{who}"),
            ).fetchall()
            if waits:
                key, until = waits[0]
                return _Refused(float(until), "address" if key.startswith("address:") else "name")
            attempt = db.execute(
                "INSERT INTO sign_in_attempts (name, address, at) VALUES (?, ?, ?)",
                (who, address, now),
            ).lastrowid
            address_failures = _count(db, "address", address, since)
            name_failures = _count(db, "name", who)
            wait_address = address_failures >= self._max_address_failures
            if wait_address:
                _wait(db, f"address:{address}", now + self._window)
            beyond = name_failures - self._max_name_failures
            if beyond >= 0:
                wait = min(self._window, _FIRST_NAME_WAIT_SECONDS * 2 ** min(beyond, 32))
                _wait(db, f"name:{who}", now + wait)
        assert attempt is not None
        return _Counted(attempt, name_failures, wait_address or beyond >= 0)

    def _uncount(self, who: str, address: str, attempt: int, now: float) -> None:
        """An attempt that could not be checked is no failure: its count goes, and the waits
        it brought about."""
        with self._transaction() as db:
            db.execute("DELETE FROM sign_in_attempts WHERE rowid = ?", (attempt,))
            if _count(db, "address", address, now - self._window) < self._max_address_failures:
                db.execute("DELETE FROM sign_in_waits WHERE key = ?", (f"address:{address}",))
            if _count(db, "name", who) < self._max_name_failures:
                db.execute("DELETE FROM sign_in_waits WHERE key = ?", (f"name:{who}",))

    def _clear(self, who: str, address: str, attempt: int, now: float) -> None:
        """After a success: the name's failures and wait go, and this attempt's count."""
        with self._transaction() as db:
            db.execute("DELETE FROM sign_in_attempts WHERE rowid = ? OR name = ?", (attempt, who))
            db.execute("DELETE FROM sign_in_waits WHERE key = ?", (f"name:{who}",))
            if _count(db, "address", address, now - self._window) < self._max_address_failures:
                db.execute("DELETE FROM sign_in_waits WHERE key = ?", (f"address:{address}",))

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # One connection per operation: the UI calls in from several threads.
        db = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db() as db, write_transaction(db):
            yield db


def _count(
    db: sqlite3.Connection, column: Literal["name", "address"], value: str, since: float = 0.0
) -> int:
    (count,) = db.execute(
        f"SELECT COUNT(*) FROM sign_in_attempts WHERE {column} = ? AND at > ?",  # noqa: S608
        (value, since),
    ).fetchone()
    return int(count)


def _wait(db: sqlite3.Connection, key: str, until: float) -> None:
    db.execute(
        "INSERT INTO sign_in_waits (key, until) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET until = max(until, excluded.until)",
        (key, until),
    )


def _load_or_create_key(path: Path) -> bytes:
    """The secret that unknown names are hashed with, created (0600) on first use."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < _KEY_BYTES:
            raise RuntimeError(
                f"{path} is shorter than {_KEY_BYTES} bytes: delete it, and a new one is made"
            ) from None
        return key
    key = secrets.token_bytes(_KEY_BYTES)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    return key


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[Network]
) -> str | None:
    """The client's address: the connection's peer, or, when the peer is one of the
    `trusted_proxies`, the nearest address in X-Forwarded-For (`forwarded_for`: its header
    values) that is not a trusted proxy's. None when the peer is not an address."""
    try:
        current = ipaddress.ip_address(peer or "")
    except ValueError:
        return None

    def trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in trusted_proxies)

    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    while trusted(current) and hops:
        try:
            current = ipaddress.ip_address(hops.pop())
        except ValueError:
            break  # a proxy we trust passed on something that is not an address: stop at it
    return str(current)


def session_expired(signed_in_at: float, now: float, minutes: int) -> bool:
    """Whether a session signed in at `signed_in_at` (seconds) has ended by `now`."""
    return now - signed_in_at >= minutes * 60


def sign_in_path(settings: Settings) -> Path:
    return settings.data_dir / "sign-in.sqlite3"


def sign_in_key_path(failure_table: Path) -> Path:
    return failure_table.with_name("sign-in.key")


def build_sign_in(settings: Settings) -> SignInGuard:
    return SignInGuard(
        sign_in_path(settings),
        settings.ui.max_failed_sign_ins,
        settings.ui.sign_in_lockout_minutes,
        build_audit(settings),
    )


def build_identity(settings: Settings, local: UserDirectory | None = None) -> IdentityProvider:
    """The identity provider users sign in with, as `identity.provider` says: the local
    directory, the organisation's LDAP directory or its OpenID provider (single sign-on; both
    with the local admins for break-glass). `local`: the local directory when the caller has
    it open."""
    local = local or build_user_directory(settings)
    if settings.identity.provider == "ldap":
        from appliance.directory import LdapIdentity

        return LdapIdentity(settings.identity.ldap, local, settings.access.group_map)
    if settings.identity.provider == "oidc":
        from appliance.sso import build_oidc_identity

        return build_oidc_identity(settings, local)
    return LocalIdentity(local)
