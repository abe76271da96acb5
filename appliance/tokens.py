"""API tokens: the per-user secrets an API client sends as `Authorization: Bearer SECRET`.

A token's secret (`rag_` and 43 URL-safe characters, 256 random bits) is handed out once,
when the token is created, and stored nowhere: the store keeps its SHA-256 and finds a
presented secret by that hash. A secret of that entropy needs neither a salt nor a slow hash,
and a lookup whose time depends on the hash tells an attacker nothing about any secret. A
token also has a short random id of its own, unrelated to the secret, by which lists,
revocation and the audit log name it.

A token expires a whole number of days after it was created, or never. A revoked token stays
listed, with when it was revoked, and verifies no more. Verifying records when the token was
last used, to within `LAST_USED_RESOLUTION` seconds, so that a busy client does not cost a
write per request.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from appliance.errors import InvalidToken, Unauthorized, UnknownToken
from appliance.sqlite import open_shared, write_transaction

SECRET_PREFIX = "rag_"
LAST_USED_RESOLUTION = 60.0  # seconds
MAX_EXPIRES_DAYS = 3650
MAX_NAME_CHARS = 100
_SECONDS_PER_DAY = 86400.0
_SECRET_BYTES = 32
_ID_BYTES = 6
_LONGEST_SECRET = 200  # anything longer is no secret of ours: refused before it is hashed

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id        TEXT PRIMARY KEY,
    user      TEXT NOT NULL,
    name      TEXT NOT NULL,
    hash      TEXT NOT NULL UNIQUE,
    created   REAL NOT NULL,
    expires   REAL,
    revoked   REAL,
    last_used REAL
);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens (user);
"""

_COLUMNS = "id, user, name, created, expires, revoked, last_used"


@dataclass(frozen=True)
class ApiToken:
    """A token as the store keeps it, without its secret. Times are seconds since the epoch."""

    id: str
    user: str
    name: str
    created: float
    expires: float | None  # None: never
    revoked: float | None
    last_used: float | None

    def as_json(self) -> dict[str, object]:
        """The token for a listing: times in ISO 8601 (UTC) or null; never the secret or its
        hash."""
        return {
            "id": self.id,
            "user": self.user,
            "name": self.name,
            "created": _iso(self.created),
            "expires": _iso(self.expires),
            "revoked": _iso(self.revoked),
            "last_used": _iso(self.last_used),
        }


def secret_hash(secret: str) -> str:
    """What the store keeps of a secret, and looks a presented one up by."""
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._db = open_shared(path, _SCHEMA)
        self._lock = threading.Lock()
        self._clock = clock

    def create(self, user: str, expires_days: int | None, name: str = "") -> tuple[ApiToken, str]:
        """A new token of `user`'s, and its secret, which the caller shows this once.
        `expires_days`: how many days it is valid for (1 to `MAX_EXPIRES_DAYS`), None for a
        token that never expires. `name`: a label on one line, at most `MAX_NAME_CHARS`
        characters. InvalidToken for a lifetime or label out of those bounds."""
        if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRES_DAYS:
            raise InvalidToken(
                f"a token's lifetime must be 1 to {MAX_EXPIRES_DAYS} days, not {expires_days}: "
                "give a lifetime in that range, or none for a token that never expires"
            )
        label = " ".join(name.split())
        if len(label) > MAX_NAME_CHARS:
            raise InvalidToken(
                f"a token's name has at most {MAX_NAME_CHARS} characters, not {len(label)}: "
                "give a shorter name"
            )
        now = self._clock()
        expires = None if expires_days is None else now + expires_days * _SECONDS_PER_DAY
        token = ApiToken(secrets.token_hex(_ID_BYTES), user, label, now, expires, None, None)
        secret = SECRET_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
        with write_transaction(self._db, self._lock) as db:
            db.execute(
                "INSERT INTO tokens (id, user, name, hash, created, expires) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token.id, user, label, secret_hash(secret), now, expires),
            )
        return token, secret

    def verify(self, secret: str) -> ApiToken:
        """The token whose secret this is, when it may be used now. Otherwise Unauthorized,
        whose message says why for the audit log: "unknown token", "revoked token" or
        "expired token". Whether the token's user still exists is the caller's to check."""
        if not secret.startswith(SECRET_PREFIX) or len(secret) > _LONGEST_SECRET:
            raise Unauthorized("unknown token")
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM tokens WHERE hash = ?",
                (secret_hash(secret),),
            ).fetchone()
        if row is None:
            raise Unauthorized("unknown token")
        token = ApiToken(*row)
        now = self._clock()
        if token.revoked is not None:
            raise Unauthorized("revoked token")
        if token.expires is not None and now >= token.expires:
            raise Unauthorized("expired token")
        if token.last_used is None or now - token.last_used >= LAST_USED_RESOLUTION:
            with write_transaction(self._db, self._lock) as db:
                # Unless a concurrent request of the same client has just recorded it.
                db.execute(
                    "UPDATE tokens SET last_used = ? "
                    "WHERE id = ? AND (last_used IS NULL OR last_used <= ?)",
                    (now, token.id, now - LAST_USED_RESOLUTION),
                )
            token = replace(token, last_used=now)
        return token

    def list(self, user: str | None = None) -> builtins.list[ApiToken]:
        """Every token, or `user`'s, newest first; revoked and expired ones included."""
        where, parameters = ("WHERE user = ?", (user,)) if user is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM tokens {where} ORDER BY created DESC, rowid DESC",
                parameters,
            ).fetchall()
        return [ApiToken(*row) for row in rows]

    def revoke(self, token_id: str) -> ApiToken:
        """Revoke the token, which verifies no more from now on. Revoking it again changes
        nothing: it keeps the time it was first revoked. UnknownToken for an id no token has."""
        with write_transaction(self._db, self._lock) as db:
            db.execute(
                "UPDATE tokens SET revoked = coalesce(revoked, ?) WHERE id = ?",
                (self._clock(), token_id),
            )
            row = db.execute(
                f"SELECT {_COLUMNS} FROM tokens WHERE id = ?",
                (token_id,),
            ).fetchone()
        if row is None:
            raise UnknownToken(
                f"no API token has the id {token_id!r}: pick an id from the list of tokens"
            )
        return ApiToken(*row)

    def remove_user(self, user: str) -> int:
        """Delete every token of `user`'s, when the user is removed: someone given the same
        name later must not inherit them. Returns how many were deleted."""
        with write_transaction(self._db, self._lock) as db:
            return db.execute("DELETE FROM tokens WHERE user = ?", (user,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
