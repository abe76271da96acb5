"""The audit log: who signed in, searched, asked, ingested, erased, and when.

One JSON object per line, appended and fsynced. Each event carries the hash of the one before
it (`prev`) and its own (`hash`: SHA-256 over the canonical JSON of the event without `hash`),
so editing, deleting or reordering a line breaks the chain at that line, which `verify` finds.
The chain is unkeyed: it shows naive tampering and accidents, not an attacker who rewrites the
whole file; copy the log off the host (a WORM share, a log collector) for that.

Retention: when an event is recorded and the oldest one is more than a day past
`retention_days`, every event older than `retention_days` is dropped by rewriting the file
atomically. The rewritten file starts with a checkpoint event (`action: "retention"`) whose
`prev` is the hash of the last dropped event: the first kept event's `prev` chains to that
recorded hash, so `verify` still passes and the kept lines stay byte for byte as written.

Events never contain document text. Callers put ids, counts, query text and flags in `detail`;
a `detail` over 4 KB serialised is refused.

Several processes may record at once: a lock file next to the log (never replaced, unlike the
log during retention) is flocked around reading the last hash, appending and fsyncing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retrieval.errors import RetrievalError
from settings import Settings

GENESIS = "0" * 64
RETENTION = "retention"
MAX_DETAIL_BYTES = 4096
MAX_QUERY_CHARS = 1000
# Retention rewrites the file at most about once a day, not on every event.
_RETENTION_SLACK = timedelta(days=1)
_ACTION = re.compile(r"^[a-z][a-z_]{0,31}$")

# The actions the appliance records; others of the same shape are accepted.
ACTIONS = frozenset(
    {"login", "login_failed", "login_locked", "logout", "search", "ask", "ingest", "erase",
     "user_add", "user_remove", "feedback", "backup", "restore"}
)  # fmt: skip


class AuditError(RetrievalError):
    """The audit log can't be written, or an event is malformed."""


@dataclass(frozen=True)
class AuditEvent:
    ts: str
    user: str
    action: str
    detail: dict[str, Any]
    prev: str
    hash: str

    @property
    def link(self) -> str:
        """The `prev` the next event must carry: a checkpoint passes on the hash it records."""
        return self.prev if self.action == RETENTION else self.hash

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.ts)

    def as_json(self) -> dict[str, Any]:
        return {"ts": self.ts, "user": self.user, "action": self.action, "detail": self.detail}


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int
    first_bad_line: int | None
    problem: str

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "first_bad_line": self.first_bad_line,
            "problem": self.problem,
        }


def canonical(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(fields: dict[str, Any]) -> str:
    body = {key: value for key, value in fields.items() if key != "hash"}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def clip_query(text: str) -> str:
    """A query as it goes into an event: long pastes are cut to `MAX_QUERY_CHARS`."""
    return text[:MAX_QUERY_CHARS]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _make_event(ts: datetime, user: str, action: str, detail: dict[str, Any], prev: str) -> str:
    fields: dict[str, Any] = {
        "ts": ts.astimezone(UTC).isoformat(timespec="microseconds"),
        "user": user,
        "action": action,
        "detail": detail,
        "prev": prev,
    }
    fields["hash"] = event_hash(fields)
    return json.dumps(fields, ensure_ascii=False)  # in reading order; the hash is canonical


def _parse(line: str, check_hash: bool = True) -> AuditEvent:
    """One line as an event; ValueError says what is wrong with it."""
    if not line.strip():
        raise ValueError("empty line")
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError("not a JSON object") from exc
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    expected = {"ts", "user", "action", "detail", "prev", "hash"}
    if set(fields) != expected:
        raise ValueError(f"fields are {sorted(fields)}, expected {sorted(expected)}")
    if not isinstance(fields["detail"], dict):
        raise ValueError("detail is not an object")
    if check_hash and fields["hash"] != event_hash(fields):
        raise ValueError("hash does not match the event: the line was changed")
    try:
        datetime.fromisoformat(fields["ts"])
    except (TypeError, ValueError) as exc:
        raise ValueError("ts is not an ISO-8601 time") from exc
    return AuditEvent(**fields)


class AuditLog:
    def __init__(
        self, path: Path, retention_days: int, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        if retention_days < 1:
            raise AuditError(f"audit retention of {retention_days} days: use at least 1")
        self.path = path
        self.retention = timedelta(days=retention_days)
        self._clock = clock
        self._lock_path = path.with_name(path.name + ".lock")

    def record(self, user: str, action: str, detail: dict[str, Any]) -> AuditEvent:
        """Append one event, chained to the last one; durable on return."""
        if not _ACTION.match(action) or action == RETENTION:
            raise AuditError(f"invalid audit action {action!r}: use lower-case letters and _")
        try:
            size = len(canonical(detail).encode())
        except (TypeError, ValueError) as exc:
            raise AuditError(f"audit detail of {action!r} is not plain JSON: {exc}") from exc
        if size > MAX_DETAIL_BYTES:
            raise AuditError(
                f"audit detail of {action!r} is {size} bytes, over {MAX_DETAIL_BYTES}: record "
                "ids, counts and flags, never document text"
            )
        with self._locked():
            now = self._clock()
            if self._retention_due(now):
                self._drop_expired(now)
            line = _make_event(now, user, action, detail, self._last_link())
            self._append(line)
        return _parse(line)

    def events(self, limit: int | None = None) -> list[AuditEvent]:
        """The events, newest first (a retention checkpoint is one of them).

        Lines that are not events at all are skipped; `verify` is what judges the chain.
        """
        newest_first: list[AuditEvent] = []
        for line in reversed(self._lines()):
            if limit is not None and len(newest_first) >= limit:
                break
            with suppress(ValueError):
                newest_first.append(_parse(line, check_hash=False))
        return newest_first

    def verify(self) -> VerifyResult:
        lines = self._lines()
        expected_prev = GENESIS
        for number, line in enumerate(lines, start=1):
            try:
                event = _parse(line)
            except ValueError as exc:
                return VerifyResult(False, len(lines), number, f"line {number}: {exc}")
            if event.action == RETENTION and number != 1:
                problem = f"line {number}: a retention checkpoint may only start the log"
                return VerifyResult(False, len(lines), number, problem)
            if event.prev != expected_prev and event.action != RETENTION:
                problem = (
                    f"line {number}: prev does not match the line before: a line was deleted, "
                    "inserted or moved here"
                )
                return VerifyResult(False, len(lines), number, problem)
            expected_prev = event.link
        return VerifyResult(True, len(lines), None, "")

    # -- inside the lock -------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise AuditError(f"cannot open the audit lock {self._lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _last_link(self) -> str:
        last = self._last_line()
        if last is None:
            return GENESIS
        try:
            return _parse(last).link
        except ValueError as exc:
            raise AuditError(
                f"the audit log {self.path} ends in a damaged line ({exc}); run "
                "`rag audit --verify`, then move the file aside to start a new log"
            ) from exc

    def _append(self, line: str) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc}") from exc

    def _retention_due(self, now: datetime) -> bool:
        oldest = self._oldest_event()
        return oldest is not None and oldest.time < now - self.retention - _RETENTION_SLACK

    def _oldest_event(self) -> AuditEvent | None:
        """The first event that is not a checkpoint, read from the head of the file."""
        if not self.path.exists():
            return None
        with self.path.open(encoding="utf-8") as log:
            for line in log:
                try:
                    event = _parse(line)
                except ValueError:
                    return None  # a damaged log is left as it is, for verify to show
                if event.action != RETENTION:
                    return event
        return None

    def _drop_expired(self, now: datetime) -> None:
        if not self.verify().ok:
            return  # never rewrite (and so hide) a broken chain
        cutoff = now - self.retention
        lines = self._lines()
        events = [_parse(line) for line in lines]
        dropped = 0
        while dropped < len(events) and (
            events[dropped].action == RETENTION or events[dropped].time < cutoff
        ):
            dropped += 1
        last_dropped = events[dropped - 1]
        count = sum(1 for event in events[:dropped] if event.action != RETENTION)
        detail = {"dropped": count, "before": cutoff.isoformat(timespec="seconds")}
        checkpoint = _make_event(now, "system", RETENTION, detail, last_dropped.link)
        self._replace([checkpoint, *lines[dropped:]])

    def _replace(self, lines: list[str]) -> None:
        fd, temporary = tempfile.mkstemp(prefix=".audit-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.writelines(line + "\n" for line in lines)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o640)
            os.replace(temporary, self.path)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise AuditError(f"cannot rewrite the audit log {self.path}: {exc}") from exc
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    # -- reading ---------------------------------------------------------------------------

    def _lines(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditError(f"cannot read the audit log {self.path}: {exc}") from exc
        lines = text.split("\n")
        return lines[:-1] if lines[-1] == "" else lines  # the piece after the last newline

    def _last_line(self) -> str | None:
        """The last non-empty line, read backwards from the end of the file."""
        try:
            with self.path.open("rb") as log:
                end = log.seek(0, os.SEEK_END)
                tail = b""
                position = end
                while position > 0:
                    step = min(8192, position)
                    position -= step
                    log.seek(position)
                    tail = log.read(step) + tail
                    stripped = tail.rstrip(b"\n")
                    if b"\n" in stripped or position == 0:
                        if not stripped:
                            return None
                        return stripped.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
                return None
        except FileNotFoundError:
            return None


def build_audit(settings: Settings) -> AuditLog:
    """The appliance's audit log, from the settings (`Settings.audit_path`, retention)."""
    return AuditLog(settings.audit_path, settings.audit.retention_days)
