"""The audit log: who signed in, searched, asked, ingested, erased, and when.

One JSON object per line, appended and fsynced. Each event carries the hash of the one before
it (`prev`), its own (`hash`: SHA-256 over the canonical JSON of the event without `hash` and
`mac`) and its sequence number (`seq`: 1 for the log's first event, one more for each event
after it, kept across retention), so editing, deleting or reordering a line breaks the chain
at that line, which `verify` finds.

The sealed head. The chain alone can't show that its last events were removed: a shorter
chain is still a chain. So every append also rewrites, atomically and under the same lock, a
small file next to the log (`audit.jsonl.head`, mode 0600) naming the log's last event (its
`seq`, the hash the next event must chain to, its time) and its first line (`first_seq`,
`first_hash`). `verify` holds the log against it: a log that ends before the head's `seq`
lost its last events ("the log ends at event 4, its head says 6: events 5 to 6 were
removed"), one that starts after the head's `first_seq` lost its first ones. The head is
written after the line it names, so after a crash it may lag behind the log; later events are
accepted (with a key only if each carries its own valid signature). A retention rewrite writes
the new head before it replaces the log, so a crash there leaves a log that starts earlier than
its head says, which is accepted too: lines can't be put in front of a chain.

`record` refuses to append (an AuditError, nothing recorded) when the log doesn't match its
head: the appliance stops rather than paper over a removal. An operator who has kept the
files as evidence goes on with `seal` (`rag audit --seal`): it accepts the log as it is, and
records a `seal` event saying what the head said, which the head from then on covers.

The key. With `audit.key_file` set (a file outside the data folder, at least 32 bytes, mode
0600), the head and every event carry an HMAC-SHA256 (`mac`) under that key. Then whoever can
write the data folder but cannot read the key cannot shorten the log, forge its head or a
retention checkpoint, or add events after its head without `verify` failing. With a key, a log
whose head is missing or unsigned (one written before the key was set, or whose head was
removed or replaced) fails `verify` and `record` until an operator runs `rag audit --seal`.

Retention: when an event is recorded and the oldest one is more than a day past
`retention_days`, every event older than `retention_days` is dropped by rewriting the file
atomically. The rewritten file starts with a checkpoint event (`action: "retention"`,
`detail: {dropped, before, retention_days}`) whose `prev` is the hash and `seq` the sequence
number of the last dropped event: the first kept event chains to that recorded hash, so
`verify` still passes and the kept lines stay byte for byte as written. `verify` checks a
checkpoint's claims: it may only start the log; it may not be dated in the future; it may only
drop events older than the retention period as of its own time (`before` at least
`retention_days` before its `ts`: the configured period, or the one it records when the head
vouches for it, so raising the period later doesn't break the log); the first kept event may
not be older than `before`; the first kept event's `seq` follows its own.

What an attacker who can rewrite the data folder can still do:
- without a key: rewrite the log and its head together, consistently (the chain is unkeyed);
  the head only catches removals by someone who leaves it alone, and accidents. Copy the log
  off the host (a WORM share, a log collector) for more.
- with a key (which they cannot read): put back a log and head they copied earlier (a rollback
  to a state that was genuine then); delete both files, after which a new log starts at event
  1; remove or replace the head, which stops the appliance from recording (and so from
  serving) until an operator runs `rag audit --seal`; read the log. Backups hold copies of
  the log and its head to compare with.
Events written before the log was sealed (by a version without heads) have no `seq`; they
verify as before, a log of only such events verifies with a note that it is not sealed yet
(with a key it fails until `rag audit --seal`), and it is sealed by the next event.

Events never contain document text. Callers put ids, counts, query text and flags in `detail`;
a `detail` over 4 KB serialised is refused. `printable` escapes control characters, for
everything that shows events as text.

Several processes may record at once: a lock file next to the log (never replaced, unlike the
log during retention) is flocked around reading the head and the last line, appending,
fsyncing and writing the head.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.errors import AuditError
from settings import Settings

GENESIS = "0" * 64
RETENTION = "retention"
SEAL = "seal"
HEAD_SUFFIX = ".head"
MAX_DETAIL_BYTES = 4096
MAX_QUERY_CHARS = 1000
MIN_KEY_BYTES = 32
# Retention rewrites the file at most about once a day, not on every event.
_RETENTION_SLACK = timedelta(days=1)
# How far in the future a checkpoint may be dated (clocks are stepped) before it is refused.
_CLOCK_SLACK = timedelta(hours=1)
_ACTION = re.compile(r"^[a-z][a-z_]{0,31}$")
_REQUIRED = frozenset({"ts", "user", "action", "detail", "prev", "hash"})
_OPTIONAL = frozenset({"seq", "mac"})
_HEAD_FIELDS = frozenset({"seq", "hash", "ts", "first_seq", "first_hash"})
# Control characters, format characters (bidi overrides, zero-width), line and paragraph
# separators, and lone surrogates: what could move a terminal's cursor or reorder a line.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

# The actions the appliance records; others of the same shape are accepted.
ACTIONS = frozenset(
    {"login", "login_failed", "login_locked", "logout", "search", "ask", "ingest", "erase",
     "user_add", "user_remove", "feedback", "backup", "restore", SEAL}
)  # fmt: skip


@dataclass(frozen=True)
class AuditEvent:
    ts: str
    user: str
    action: str
    detail: dict[str, Any]
    prev: str
    hash: str
    seq: int | None = None  # None: written before the log was sealed
    mac: str | None = None  # with a key: HMAC of `hash`

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
class Head:
    """The log's last event and first line, kept apart from the log (see the docstring)."""

    seq: int
    hash: str
    ts: str
    first_seq: int
    first_hash: str
    mac: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "ts": self.ts,
            "first_seq": self.first_seq,
            "first_hash": self.first_hash,
        }


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int
    first_bad_line: int | None
    problem: str
    sealed: bool = False  # a head vouches for the log's first and last events
    signed: bool = False  # ... and carries a valid signature under the configured key
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "first_bad_line": self.first_bad_line,
            "problem": self.problem,
            "sealed": self.sealed,
            "signed": self.signed,
            "note": self.note,
        }


def canonical(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(fields: dict[str, Any]) -> str:
    body = {key: value for key, value in fields.items() if key not in ("hash", "mac")}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def event_mac(key: bytes, hash_: str) -> str:
    return hmac.new(key, b"audit-event\0" + hash_.encode(), hashlib.sha256).hexdigest()


def head_mac(key: bytes, head: Head) -> str:
    message = b"audit-head\0" + canonical(head.fields()).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def head_path(log: Path) -> Path:
    """Where the head of the log at `log` is kept."""
    return log.with_name(log.name + HEAD_SUFFIX)


def clip_query(text: str) -> str:
    """A query as it goes into an event: long pastes are cut to `MAX_QUERY_CHARS`."""
    return text[:MAX_QUERY_CHARS]


def printable(text: str) -> str:
    """`text` with every control, format and separator character escaped (`\\x1b`,
    `\\u202e`): an event shown as text can't forge a line, move the cursor or reorder what
    follows it."""
    if text.isprintable():
        return text
    return "".join(
        _escaped(char) if unicodedata.category(char) in _UNPRINTABLE else char for char in text
    )


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _events_between(first: int, last: int) -> str:
    return f"event {first} was" if first == last else f"events {first} to {last} were"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _make_event(
    ts: datetime,
    user: str,
    action: str,
    detail: dict[str, Any],
    prev: str,
    seq: int,
    key: bytes | None,
) -> str:
    fields: dict[str, Any] = {
        "ts": ts.astimezone(UTC).isoformat(timespec="microseconds"),
        "seq": seq,
        "user": user,
        "action": action,
        "detail": detail,
        "prev": prev,
    }
    fields["hash"] = event_hash(fields)
    if key is not None:
        fields["mac"] = event_mac(key, fields["hash"])
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
    if not _REQUIRED <= set(fields) <= _REQUIRED | _OPTIONAL:
        raise ValueError(
            f"fields are {sorted(fields)}, expected {sorted(_REQUIRED)} and maybe "
            f"{sorted(_OPTIONAL)}"
        )
    for name in ("ts", "user", "action", "prev", "hash", *(("mac",) if "mac" in fields else ())):
        if not isinstance(fields[name], str):
            raise ValueError(f"{name} is not a string")
    if not isinstance(fields["detail"], dict):
        raise ValueError("detail is not an object")
    seq = fields.get("seq")
    if "seq" in fields and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        raise ValueError("seq is not a whole number")
    if check_hash and fields["hash"] != event_hash(fields):
        raise ValueError("hash does not match the event: the line was changed")
    try:
        datetime.fromisoformat(fields["ts"])
    except ValueError as exc:
        raise ValueError("ts is not an ISO-8601 time") from exc
    return AuditEvent(**fields)


def _parse_head(text: str) -> Head:
    """The head file's content as a Head; ValueError says what is wrong with it."""
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError("not a JSON object") from exc
    if not isinstance(fields, dict) or not _HEAD_FIELDS <= set(fields) <= _HEAD_FIELDS | {"mac"}:
        raise ValueError("not an audit head")
    for name in ("seq", "first_seq"):
        value = fields[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} is not a whole number")
    for name in ("hash", "ts", "first_hash", *(("mac",) if "mac" in fields else ())):
        if not isinstance(fields[name], str):
            raise ValueError(f"{name} is not a string")
    return Head(**fields)


@dataclass(frozen=True)
class _Tip:
    """Where the next event goes: after `seq`, chained to `link`; and the log's first line."""

    seq: int
    link: str
    first_seq: int | None  # None: the log is empty
    first_hash: str


@dataclass
class _Walk:
    """What reading the whole log found: its first problem, its ends, where it was sealed."""

    lines: int = 0
    problem: str = ""
    bad_line: int | None = None
    complete: bool = True  # every line could be read as an event
    first_seq: int = 0
    first_hash: str = GENESIS
    last_seq: int = 0
    last_link: str = GENESIS
    last_ts: str = ""
    sealed_from: int | None = None  # the first line with a sequence number
    checkpoint: AuditEvent | None = None
    first_kept: AuditEvent | None = None
    head_link: str | None = None  # the link of the event with the head's seq
    head_line: int | None = None
    unsigned_after_head: int | None = None  # with a key: a line after the head without a mac

    def fail(self, line: int, problem: str) -> None:
        if not self.problem:
            self.bad_line, self.problem = line, problem


class AuditLog:
    def __init__(
        self,
        path: Path,
        retention_days: int,
        clock: Callable[[], datetime] = _utc_now,
        *,
        key: bytes | None = None,
    ) -> None:
        if retention_days < 1:
            raise AuditError(f"audit retention of {retention_days} days: use at least 1")
        if key is not None and len(key) < MIN_KEY_BYTES:
            raise AuditError(f"an audit key of {len(key)} bytes: use at least {MIN_KEY_BYTES}")
        self.path = path
        self.head_path = head_path(path)
        self.retention = timedelta(days=retention_days)
        self._clock = clock
        self._key = key
        self._lock_path = path.with_name(path.name + ".lock")

    @property
    def signed(self) -> bool:
        return self._key is not None

    def record(self, user: str, action: str, detail: dict[str, Any]) -> AuditEvent:
        """Append one event, chained to the last one and sealed; durable on return.

        Raises AuditError, recording nothing, when the log does not match its head."""
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
            tip = self._tip()
            if self._retention_due(now):
                tip = self._drop_expired(now, tip)
            return self._append_sealed(now, user, action, detail, tip)

    def seal(self, user: str) -> dict[str, Any]:
        """Accept the log as it is now: record a `seal` event saying what its head said, and
        seal (with a key: sign) the head from there. Refused when the chain itself is broken.
        Returns `{"sealed", "signed", "seq", "events", "previous"}`."""
        with self._locked():
            lines = self._lines()
            try:
                head, trouble = self._read_head(), ""
            except ValueError as exc:
                head, trouble = None, f"the head was damaged ({exc})"
            walk = self._walk(lines, head)
            note = ""
            if not trouble and not walk.problem:
                trouble, _, note = self._head_problem(walk, head)
            previous = trouble or note
            trusted = None if trouble else head  # whether it may vouch for a checkpoint
            broken = walk.problem or self._checkpoint_problem(walk, trusted)
            if broken:
                raise AuditError(
                    f"the audit log {self.path} can't be sealed: {broken}; keep it as evidence "
                    f"and move it and {self.head_path.name} aside to start a new log"
                )
            tip = _Tip(walk.last_seq, walk.last_link, walk.first_seq if lines else None,
                       walk.first_hash)  # fmt: skip
            detail = {"events": len(lines), "signed": self.signed, "head": previous or "intact"}
            event = self._append_sealed(self._clock(), user, SEAL, detail, tip)
        assert event.seq is not None
        return {
            "sealed": True,
            "signed": self.signed,
            "seq": event.seq,
            "events": len(lines) + 1,
            "previous": previous,
        }

    def copy_to(self, target: Path) -> None:
        """Copy the log and its head to `target` and its head path, between two appends."""
        with self._locked():
            if self.path.exists():
                shutil.copyfile(self.path, target)
            if self.head_path.exists():
                shutil.copyfile(self.head_path, head_path(target))
                os.chmod(head_path(target), 0o600)

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
        try:
            head = self._read_head()
        except ValueError as exc:
            problem = (
                f"the head {self.head_path.name} is damaged ({exc}): it was changed, so nothing "
                "shows whether events were removed"
            )
            return VerifyResult(False, len(lines), None, problem)
        walk = self._walk(lines, head)
        if walk.problem:
            return VerifyResult(False, len(lines), walk.bad_line, walk.problem)
        problem, bad_line, note = self._head_problem(walk, head)
        if problem:
            return VerifyResult(False, len(lines), bad_line, problem)
        problem = self._checkpoint_problem(walk, head)
        if problem:
            return VerifyResult(False, len(lines), 1, problem)
        sealed = head is not None
        return VerifyResult(True, len(lines), None, "", sealed, sealed and self.signed, note)

    # -- checking --------------------------------------------------------------------------

    def _walk(self, lines: list[str], head: Head | None) -> _Walk:
        """Read every line: the chain, the sequence numbers, and where the head's event is."""
        walk = _Walk(lines=len(lines))
        expected_prev, next_seq = GENESIS, 1
        for number, line in enumerate(lines, start=1):
            try:
                event = _parse(line)
            except ValueError as exc:
                walk.fail(number, f"line {number}: {exc}")
                walk.complete = False
                break
            checkpoint = event.action == RETENTION
            if checkpoint and number != 1:
                walk.fail(number, f"line {number}: a retention checkpoint may only start the log")
            if event.prev != expected_prev and not checkpoint:
                walk.fail(
                    number,
                    f"line {number}: prev does not match the line before: a line was deleted, "
                    "inserted or moved here",
                )
            if number == 1:
                next_seq = 0 if checkpoint else 1
            if event.seq is None:
                if walk.sealed_from is not None:
                    walk.fail(
                        number,
                        f"line {number} has no sequence number, after sealed events from line "
                        f"{walk.sealed_from}: it was put here from elsewhere",
                    )
                seq = next_seq
            else:
                if walk.sealed_from is None:
                    walk.sealed_from = number
                if event.seq != next_seq and not (number == 1 and checkpoint):
                    walk.fail(
                        number,
                        f"line {number} is event {event.seq} where event {next_seq} was "
                        "expected: events were removed or added before it",
                    )
                seq = event.seq
            if number == 1:
                walk.first_seq, walk.first_hash = seq, event.hash
                if checkpoint:
                    walk.checkpoint = event
            elif number == 2 and walk.checkpoint is not None:
                walk.first_kept = event
            if head is not None and seq == head.seq:
                walk.head_link, walk.head_line = event.link, number
            if (
                head is not None
                and self._key is not None
                and seq > head.seq
                and walk.unsigned_after_head is None
                and not (
                    event.mac and hmac.compare_digest(event.mac, event_mac(self._key, event.hash))
                )
            ):
                walk.unsigned_after_head = number
            walk.last_seq, walk.last_link, walk.last_ts = seq, event.link, event.ts
            expected_prev, next_seq = event.link, seq + 1
        return walk

    def _head_problem(self, walk: _Walk, head: Head | None) -> tuple[str, int | None, str]:
        """The log's ends held against its head: (problem, first bad line, note)."""
        not_signed = (
            "the log is not signed with the key in RAG_AUDIT__KEY_FILE (it was written before "
            "the key was set, or its head was removed or replaced): check it, then run `rag "
            "audit --seal`"
        )
        if head is None:
            if walk.lines == 0:
                return "", None, ""
            if walk.sealed_from is None or (
                self._key is None and walk.sealed_from == walk.lines and walk.complete
            ):
                if self._key is not None:
                    return not_signed, None, ""
                return (
                    "",
                    None,
                    (
                        "not sealed yet (written by an earlier version, or sealing was cut short): "
                        "sealed by the next event"
                    ),
                )
            return (
                f"the head {self.head_path.name} is missing: the log ends at event "
                f"{walk.last_seq} and nothing shows whether events after it were removed",
                walk.lines + 1,
                "",
            )
        if self._key is not None:
            if head.mac is None:
                return not_signed, None, ""
            if not hmac.compare_digest(head.mac, head_mac(self._key, head)):
                return (
                    f"the signature of the head {self.head_path.name} does not match the key in "
                    "RAG_AUDIT__KEY_FILE: the head was forged, or the key changed (then check "
                    "the log and run `rag audit --seal`)",
                    None,
                    "",
                )
        if walk.lines == 0:
            return (
                f"the log is empty, its head says it ends at event {head.seq} ({head.ts}): "
                "events were removed",
                1,
                "",
            )
        if walk.first_seq > head.first_seq:
            return (
                f"the log starts at event {walk.first_seq}, its head says {head.first_seq}: "
                "events were removed from its start",
                1,
                "",
            )
        if walk.first_seq == head.first_seq and walk.first_hash != head.first_hash:
            return "line 1 is not the first line its head records: it was replaced", 1, ""
        if walk.last_seq < head.seq:
            return (
                f"the log ends at event {walk.last_seq}, its head says {head.seq} ({head.ts}): "
                f"{_events_between(walk.last_seq + 1, head.seq)} removed",
                walk.lines + 1,
                "",
            )
        if walk.head_link != head.hash:
            return (
                f"event {head.seq} is not the one its head records: the end of the log was "
                "replaced",
                walk.head_line,
                "",
            )
        if walk.unsigned_after_head is not None:
            line = walk.unsigned_after_head
            return (
                f"line {line} comes after the event its head records but is not signed with the "
                "key: it was added by someone without the key",
                line,
                "",
            )
        if walk.last_seq > head.seq:
            behind = walk.last_seq - head.seq
            return (
                "",
                None,
                f"the head lags {behind} events behind (cut short); the next event updates it",
            )
        return "", None, ""

    def _checkpoint_problem(self, walk: _Walk, head: Head | None) -> str:
        """What is wrong with the checkpoint that starts the log, if one does."""
        checkpoint = walk.checkpoint
        if checkpoint is None:
            return ""
        dropped, before = checkpoint.detail.get("dropped"), checkpoint.detail.get("before")
        recorded_days = checkpoint.detail.get("retention_days")
        try:
            cutoff = datetime.fromisoformat(str(before))
        except ValueError:
            return "line 1: the retention checkpoint's `before` is not an ISO-8601 time"
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)
        if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 0:
            return "line 1: the retention checkpoint's `dropped` is not a whole number"
        if checkpoint.seq is not None and dropped > checkpoint.seq:
            return (
                f"line 1: the retention checkpoint says it dropped {dropped} events but stands "
                f"for event {checkpoint.seq}: it was forged"
            )
        written = checkpoint.time
        if written > self._clock() + _CLOCK_SLACK:
            return (
                f"line 1: the retention checkpoint is dated {checkpoint.ts}, in the future: it "
                "was forged"
            )
        retention = self.retention
        vouched = head is not None and (head.first_seq, head.first_hash) == (
            walk.first_seq, walk.first_hash
        )  # fmt: skip
        if vouched and isinstance(recorded_days, int) and not isinstance(recorded_days, bool):
            retention = min(retention, timedelta(days=max(recorded_days, 1)))
        if cutoff > written - retention:
            return (
                f"line 1: the retention checkpoint drops events up to {before}, within the "
                f"retention period of {retention.days} days before it was written "
                f"({checkpoint.ts}): events were removed"
            )
        kept = walk.first_kept
        if kept is not None and kept.time < cutoff:
            return (
                f"line 2 is dated {kept.ts}, before the cut-off {before} of the retention "
                "checkpoint that precedes it: the checkpoint was forged"
            )
        return ""

    # -- inside the lock -------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit lock {self._lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _tip(self) -> _Tip:
        """Where the next event goes, once the log is found to match its head."""
        try:
            head = self._read_head()
        except ValueError as exc:
            raise self._refusal(f"its head {self.head_path.name} is damaged ({exc})") from exc
        last_line = self._last_line()
        last: AuditEvent | None = None
        if last_line is not None:
            try:
                last = _parse(last_line)
            except ValueError as exc:
                raise AuditError(
                    f"the audit log {self.path} ends in a damaged line ({exc}); run "
                    "`rag audit --verify`, then move the file aside to start a new log"
                ) from exc
        if last is None and head is None:
            return _Tip(0, GENESIS, None, GENESIS)
        if (
            head is not None
            and last is not None
            and (last.seq, last.link) == (head.seq, head.hash)
            and (
                self._key is None
                or (
                    head.mac is not None
                    and hmac.compare_digest(head.mac, head_mac(self._key, head))
                )
            )
        ):
            return _Tip(head.seq, head.hash, head.first_seq, head.first_hash)
        # Rare: a log not sealed yet, a head cut short by a crash, or a log that doesn't match.
        lines = self._lines()
        walk = self._walk(lines, head)
        problem, _, _ = self._head_problem(walk, head)
        if problem:
            raise self._refusal(problem)
        if not walk.complete:
            raise AuditError(
                f"the audit log {self.path} is damaged ({walk.problem}); run `rag audit "
                "--verify`, then move the file aside to start a new log"
            )
        return _Tip(walk.last_seq, walk.last_link, walk.first_seq if lines else None,
                    walk.first_hash)  # fmt: skip

    def _refusal(self, problem: str) -> AuditError:
        return AuditError(
            f"the audit log {self.path} does not match its head: {problem}; nothing was "
            f"recorded: keep {self.path.name} and {self.head_path.name} as evidence, see `rag "
            "audit --verify`, then `rag audit --seal` goes on from the log as it is"
        )

    def _append_sealed(
        self, now: datetime, user: str, action: str, detail: dict[str, Any], tip: _Tip
    ) -> AuditEvent:
        line = _make_event(now, user, action, detail, tip.link, tip.seq + 1, self._key)
        self._append(line)
        event = _parse(line)
        assert event.seq is not None
        if tip.first_seq is None:
            first_seq, first_hash = event.seq, event.hash
        else:
            first_seq, first_hash = tip.first_seq, tip.first_hash
        self._write_head(Head(event.seq, event.hash, event.ts, first_seq, first_hash))
        return event

    def _append(self, line: str) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {exc}") from exc

    def _write_head(self, head: Head) -> None:
        fields = head.fields()
        if self._key is not None:
            fields["mac"] = head_mac(self._key, head)
        text = json.dumps(fields) + "\n"
        try:
            fd, temporary = tempfile.mkstemp(prefix=".audit-head-", dir=self.path.parent)
        except OSError as exc:
            raise AuditError(f"cannot write the audit head {self.head_path}: {exc}") from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp made it 0600
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.head_path)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise AuditError(f"cannot write the audit head {self.head_path}: {exc}") from exc

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

    def _drop_expired(self, now: datetime, tip: _Tip) -> _Tip:
        """Drop the expired events; returns the tip with the log's new first line."""
        if not self.verify().ok:
            return tip  # never rewrite (and so hide) a broken chain
        cutoff = now - self.retention
        lines = self._lines()
        events = [_parse(line) for line in lines]
        dropped = 0
        while dropped < len(events) and (
            events[dropped].action == RETENTION or events[dropped].time < cutoff
        ):
            dropped += 1
        first = events[0]
        first_seq = first.seq if first.seq is not None else (0 if first.action == RETENTION else 1)
        last_dropped_seq = first_seq + dropped - 1  # the chain verified: numbers run on by one
        count = sum(1 for event in events[:dropped] if event.action != RETENTION)
        detail = {
            "dropped": count,
            "before": cutoff.isoformat(timespec="seconds"),
            "retention_days": self.retention.days,
        }
        line = _make_event(
            now, "system", RETENTION, detail, events[dropped - 1].link, last_dropped_seq, self._key
        )
        checkpoint = _parse(line)
        if tip.first_seq is not None:  # the head first: a crash leaves a log that starts earlier
            last = events[-1]
            self._write_head(Head(tip.seq, tip.link, last.ts, last_dropped_seq, checkpoint.hash))
        self._replace([line, *lines[dropped:]])
        return _Tip(tip.seq, tip.link, last_dropped_seq, checkpoint.hash)

    def _replace(self, lines: list[str]) -> None:
        fd, temporary = tempfile.mkstemp(prefix=".audit-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.writelines(line + "\n" for line in lines)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, 0o600)
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

    def _read_head(self) -> Head | None:
        """The head, None when there is none; ValueError when it is damaged."""
        try:
            text = self.head_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"cannot read the audit head {self.head_path}: {exc}") from exc
        return _parse_head(text)

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


def read_key(path: Path) -> bytes:
    """The audit key in the file at `path`: at least `MIN_KEY_BYTES`, readable by its owner
    only. Raises AuditError saying what to fix."""
    try:
        mode = path.stat().st_mode
        key = path.read_bytes().strip()
    except OSError as exc:
        raise AuditError(
            f"cannot read the audit key {path} ({exc.strerror or exc}): set "
            "RAG_AUDIT__KEY_FILE to a file the appliance may read"
        ) from exc
    if mode & 0o077:
        raise AuditError(
            f"the audit key {path} may be read or written by others (mode {mode & 0o777:o}): "
            f"run `chmod 600 {path}`"
        )
    if len(key) < MIN_KEY_BYTES:
        raise AuditError(
            f"the audit key {path} holds {len(key)} bytes: put at least {MIN_KEY_BYTES} random "
            f"bytes in it, e.g. `head -c 48 /dev/urandom | base64 > {path}`"
        )
    return key


def audit_key(settings: Settings) -> bytes | None:
    """The configured audit key, None without one; kept outside the data folder."""
    key_file = settings.audit.key_file
    if key_file is None:
        return None
    if key_file.resolve().is_relative_to(settings.data_dir.resolve()):
        raise AuditError(
            f"the audit key {key_file} is inside RAG_DATA_DIR, where whoever may write the data "
            "folder could read it: keep it elsewhere and set RAG_AUDIT__KEY_FILE to it"
        )
    return read_key(key_file)


def build_audit(settings: Settings) -> AuditLog:
    """The appliance's audit log, from the settings (`Settings.audit_path`, retention, key)."""
    return AuditLog(settings.audit_path, settings.audit.retention_days, key=audit_key(settings))
