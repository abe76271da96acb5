"""Who is signing in: identity providers, and the guard that rate-limits and audits sign-ins.

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
  has no password step: its `authenticate` is the token exchange, and `SignInGuard` still
  audits the outcome.

No OIDC code ships yet: the appliance signs users in with `LocalIdentity`.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from retrieval.audit import AuditLog, build_audit
from retrieval.users import User, UserDirectory, build_user_directory
from settings import Settings

# A name as typed is kept in the failure table and the audit log at most this long.
_MAX_NAME_CHARS = 128

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sign_in_failures (name TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sign_in_failures_name ON sign_in_failures (name, at);
CREATE TABLE IF NOT EXISTS sign_in_locks (name TEXT PRIMARY KEY, until REAL NOT NULL);
"""


class IdentityProvider(Protocol):
    def authenticate(self, name: str, password: str) -> User | None:
        """The user these credentials belong to, or None: unknown name and wrong password
        are not told apart."""


class LocalIdentity:
    """Users of the appliance's own directory (scrypt password hashes)."""

    def __init__(self, directory: UserDirectory) -> None:
        self._directory = directory

    def authenticate(self, name: str, password: str) -> User | None:
        return self._directory.authenticate(name, password)


Outcome = Literal["ok", "wrong", "locked"]


@dataclass(frozen=True)
class SignInResult:
    outcome: Outcome
    user: User | None = None
    retry_after_minutes: int | None = None  # set when locked

    @property
    def message_id(self) -> str | None:
        """The UI text (ui.i18n) to show; None when signed in."""
        return {"ok": None, "wrong": "wrong_password", "locked": "locked"}[self.outcome]


class SignInGuard:
    """Signs users in through a provider, at most `max_failures` wrong tries per name.

    When a name's failures within `lockout_minutes` reach `max_failures`, that name is locked
    for `lockout_minutes`: attempts are refused without checking the password. The same holds
    for names nobody has, so a lockout tells nothing about which names exist. Every attempt is
    audited: `login`, `login_failed` or `login_locked`.
    """

    def __init__(
        self,
        path: Path,
        max_failures: int,
        lockout_minutes: int,
        audit: AuditLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = path
        self._max_failures = max_failures
        self._window = lockout_minutes * 60.0
        self._audit = audit
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    def sign_in(self, provider: IdentityProvider, name: str, password: str) -> SignInResult:
        name = name.strip()[:_MAX_NAME_CHARS]
        now = self._clock()
        locked_until = self._locked_until(name, now)
        if locked_until is not None:
            minutes = max(1, math.ceil((locked_until - now) / 60))
            self._audit.record(name, "login_locked", {"retry_after_minutes": minutes})
            return SignInResult("locked", retry_after_minutes=minutes)
        user = provider.authenticate(name, password)
        if user is None:
            failures, locked = self._record_failure(name, now)
            self._audit.record(name, "login_failed", {"failures": failures, "locked": locked})
            return SignInResult("wrong")
        with self._db() as db:
            db.execute("DELETE FROM sign_in_failures WHERE name = ?", (name,))
            db.execute("DELETE FROM sign_in_locks WHERE name = ?", (name,))
        self._audit.record(user.name, "login", {"groups": list(user.groups), "admin": user.admin})
        return SignInResult("ok", user=user)

    def sign_out(self, name: str, reason: Literal["user", "expired"] = "user") -> None:
        self._audit.record(name, "logout", {"reason": reason})

    def _locked_until(self, name: str, now: float) -> float | None:
        with self._db() as db:
            row = db.execute("SELECT until FROM sign_in_locks WHERE name = ?", (name,)).fetchone()
        return float(row[0]) if row is not None and row[0] > now else None

    def _record_failure(self, name: str, now: float) -> tuple[int, bool]:
        """Count this failure; lock the name when it reaches the limit. (failures, locked)"""
        since = now - self._window
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM sign_in_failures WHERE at <= ?", (since,))
            db.execute("DELETE FROM sign_in_locks WHERE until <= ?", (now,))
            db.execute("INSERT INTO sign_in_failures (name, at) VALUES (?, ?)", (name, now))
            (failures,) = db.execute(
                "SELECT COUNT(*) FROM sign_in_failures WHERE name = ?", (name,)
            ).fetchone()
            locked = failures >= self._max_failures
            if locked:
                db.execute(
                    "INSERT INTO sign_in_locks (name, until) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET until = excluded.until",
                    (name, now + self._window),
                )
                db.execute("DELETE FROM sign_in_failures WHERE name = ?", (name,))
            db.execute("COMMIT")
        return int(failures), locked

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # One connection per operation: the UI calls in from several threads.
        db = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()


def session_expired(signed_in_at: float, now: float, minutes: int) -> bool:
    """Whether a session signed in at `signed_in_at` (seconds) has ended by `now`."""
    return now - signed_in_at >= minutes * 60


def sign_in_path(settings: Settings) -> Path:
    return settings.data_dir / "sign-in.sqlite3"


def build_sign_in(settings: Settings) -> SignInGuard:
    return SignInGuard(
        sign_in_path(settings),
        settings.ui.max_failed_sign_ins,
        settings.ui.sign_in_lockout_minutes,
        build_audit(settings),
    )


def build_identity(settings: Settings) -> IdentityProvider:
    """The identity provider the UI signs users in with (the local directory, for now)."""
    return LocalIdentity(build_user_directory(settings))
