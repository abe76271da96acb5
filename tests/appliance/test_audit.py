"""The audit log: a hash chain that shows edits, deletions and reordering, and a sealed head
(signed under a key) that shows events removed from either end, under concurrency and
retention; forged retention checkpoints; events shown as text."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.audit import AuditError, AuditLog, build_audit, event_hash, printable
from settings import PROJECT_ROOT, AuditSettings, Settings

KEY = os.urandom(32)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def filled_log(path: Path, events: int = 5) -> AuditLog:
    log = AuditLog(path, retention_days=30)
    for number in range(events):
        log.record("alice", "search", {"query": f"question {number}", "chunk_ids": [number]})
    return log


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def head_of(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def legacy_log(path: Path, times: list[datetime]) -> None:
    """A log as versions before the sealed head wrote it: no `seq`, no head."""
    lines, prev = [], "0" * 64
    for number, ts in enumerate(times):
        fields = {"ts": ts.isoformat(timespec="microseconds"), "user": "alice",
                  "action": "search", "detail": {"query": f"q{number}"}, "prev": prev}  # fmt: skip
        body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        fields["hash"] = prev = hashlib.sha256(body.encode()).hexdigest()
        lines.append(json.dumps(fields))
    write_lines(path, lines)


def forged_checkpoint(first_kept: str, ts: datetime, before: datetime, dropped: int) -> str:
    """A retention checkpoint made by hand, as someone who rewrites the file would make it."""
    kept = json.loads(first_kept)
    fields = {"ts": ts.isoformat(timespec="microseconds"), "user": "system",
              "action": "retention", "prev": kept["prev"],
              "detail": {"dropped": dropped, "before": before.isoformat(timespec="seconds"),
                         "retention_days": 30}}  # fmt: skip
    if "seq" in kept:
        fields["seq"] = kept["seq"] - 1
    fields["hash"] = event_hash(fields)
    return json.dumps(fields)


def daily_log(path: Path, days: int, key: bytes | None = None) -> tuple[AuditLog, Clock]:
    """One search a day for `days` days, retention 30 days (so nothing is dropped yet)."""
    clock = Clock()
    log = AuditLog(path, retention_days=30, clock=clock, key=key)
    for day in range(days):
        clock.now = datetime(2026, 1, 1, 9, 0, tzinfo=UTC) + timedelta(days=day)
        log.record("alice", "search", {"query": f"day {day}", "chunk_ids": []})
    return log, clock


def test_recorded_events_chain_and_read_back_newest_first(tmp_path: Path) -> None:
    log = filled_log(tmp_path / "audit.jsonl", 3)
    events = log.events(None)
    assert [e.detail["query"] for e in events] == ["question 2", "question 1", "question 0"]
    assert events[0].prev == events[1].hash and events[1].prev == events[2].hash
    assert events[2].prev == "0" * 64
    assert datetime.fromisoformat(events[0].ts).utcoffset() == timedelta(0)
    assert [e.detail["query"] for e in log.events(2)] == ["question 2", "question 1"]
    assert log.verify().as_json() == {
        "ok": True, "events": 3, "first_bad_line": None, "problem": "", "sealed": True,
        "signed": False, "note": "",
    }  # fmt: skip


def test_an_empty_or_missing_log_verifies(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", retention_days=30)
    assert log.events(None) == []
    assert log.verify().ok and log.verify().events == 0


def test_an_edited_line_is_found_by_its_number(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled_log(path)
    lines = lines_of(path)
    lines[2] = lines[2].replace("question 2", "question two")
    write_lines(path, lines)
    result = log.verify()
    assert (result.ok, result.first_bad_line) == (False, 3)
    assert "changed" in result.problem


def test_a_deleted_line_is_found_by_its_number(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled_log(path)
    lines = lines_of(path)
    write_lines(path, lines[:1] + lines[2:])
    result = log.verify()
    assert (result.ok, result.first_bad_line) == (False, 2)
    assert "deleted" in result.problem
    write_lines(path, lines[1:])  # the very first one
    assert log.verify().first_bad_line == 1


def test_reordered_lines_are_found_by_the_first_moved_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled_log(path)
    lines = lines_of(path)
    lines[3], lines[4] = lines[4], lines[3]
    write_lines(path, lines)
    assert (log.verify().ok, log.verify().first_bad_line) == (False, 4)


def test_a_line_that_is_not_json_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled_log(path, 2)
    with path.open("a", encoding="utf-8") as out:
        out.write('{"ts": "2026-01-0\n')  # a torn write
    result = log.verify()
    assert (result.ok, result.first_bad_line) == (False, 3)
    with pytest.raises(AuditError, match="damaged line"):
        log.record("alice", "search", {"query": "x"})


def test_a_large_or_odd_detail_is_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", retention_days=30)
    with pytest.raises(AuditError, match="never document text"):
        log.record("alice", "ask", {"text": "x" * 5000})
    with pytest.raises(AuditError, match="not plain JSON"):
        log.record("alice", "ask", {"when": datetime.now(UTC)})
    with pytest.raises(AuditError, match="invalid audit action"):
        log.record("alice", "retention", {})
    assert not (tmp_path / "audit.jsonl").exists() or log.events(None) == []


_WRITER = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path
    from appliance.audit import AuditLog

    key = bytes.fromhex(sys.argv[4]) if len(sys.argv) > 4 else None
    log = AuditLog(Path(sys.argv[1]), retention_days=30, key=key)
    while not Path(sys.argv[1] + ".go").exists():  # both start together
        time.sleep(0.001)
    for number in range(int(sys.argv[3])):
        log.record(sys.argv[2], "search", {"query": f"q{number}", "chunk_ids": []})
    """
)


@pytest.mark.parametrize("key", [None, KEY], ids=["unsigned", "signed"])
def test_two_processes_appending_at_once_keep_the_chain_and_its_head(
    tmp_path: Path, key: bytes | None
) -> None:
    path, each = tmp_path / "audit.jsonl", 300 if key is None else 150
    key_argument = [key.hex()] if key else []
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), name, str(each), *key_argument],
            cwd=PROJECT_ROOT,
        )  # fmt: skip
        for name in ("alice", "bob")
    ]
    time.sleep(1.0)  # both have imported and wait
    Path(f"{path}.go").touch()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    log = AuditLog(path, retention_days=30, key=key)
    result = log.verify()
    assert result.ok, result.problem
    assert (result.events, result.sealed, result.signed, result.note) == (
        2 * each, True, key is not None, ""
    )  # fmt: skip
    assert json.loads(head_of(path).read_text())["seq"] == 2 * each
    users = [event.user for event in log.events(None)]
    assert users.count("alice") == users.count("bob") == each


def test_retention_drops_old_events_and_verify_still_passes(tmp_path: Path) -> None:
    path, clock = tmp_path / "audit.jsonl", Clock()
    log = AuditLog(path, retention_days=30, clock=clock)
    for day in range(40):
        clock.now = datetime(2026, 1, 1, 9, 0, tzinfo=UTC) + timedelta(days=day)
        log.record("alice", "search", {"query": f"day {day}", "chunk_ids": []})
    assert log.verify().ok, log.verify().problem
    events = log.events(None)
    oldest = events[-1]
    assert oldest.action == "retention"
    kept = [e for e in events if e.action != "retention"]
    assert all(clock.now - e.time <= timedelta(days=31) for e in kept)
    assert kept[-1].prev == oldest.prev  # the first kept event chains to the checkpoint's hash
    # the rewrite runs once the oldest event is a day past retention: days 8 to 39 are kept
    assert [e.detail["query"] for e in kept][-1] == "day 8" and len(kept) == 32
    assert oldest.detail["dropped"] == 2  # days 6 and 7, by the last rewrite on day 38
    # tampering after retention is still found
    lines = lines_of(path)
    write_lines(path, lines[:1] + lines[2:])
    assert log.verify().first_bad_line == 2


def test_retention_keeps_the_kept_lines_byte_for_byte(tmp_path: Path) -> None:
    path, clock = tmp_path / "audit.jsonl", Clock()
    log = AuditLog(path, retention_days=1, clock=clock)
    log.record("alice", "login", {})
    clock.now += timedelta(days=2)
    log.record("alice", "search", {"query": "recent", "chunk_ids": []})
    recent_line = lines_of(path)[1]
    clock.now += timedelta(hours=12)
    log.record("alice", "logout", {"reason": "user"})
    lines = lines_of(path)
    assert [json.loads(line)["action"] for line in lines] == ["retention", "search", "logout"]
    assert lines[1] == recent_line
    assert log.verify().ok


def test_retention_leaves_a_broken_log_as_evidence(tmp_path: Path) -> None:
    path, clock = tmp_path / "audit.jsonl", Clock()
    log = AuditLog(path, retention_days=1, clock=clock)
    for _ in range(3):
        log.record("alice", "login", {})
    lines = lines_of(path)
    write_lines(path, [lines[0], lines[2]])
    clock.now += timedelta(days=5)
    log.record("alice", "login", {})
    assert len(lines_of(path)) == 3  # nothing dropped, nothing rewritten
    assert log.verify().first_bad_line == 2


def test_an_everything_expired_log_chains_on_from_its_checkpoint(tmp_path: Path) -> None:
    path, clock = tmp_path / "audit.jsonl", Clock()
    log = AuditLog(path, retention_days=1, clock=clock)
    log.record("alice", "login", {})
    clock.now += timedelta(days=10)
    log.record("bob", "login", {})
    clock.now += timedelta(days=10)
    log.record("carol", "login", {})
    assert [e.user for e in log.events(None)] == ["carol", "system"]
    assert log.verify().ok, log.verify().problem


# -- the sealed head: removing the last events ------------------------------------------------


def test_dropping_the_last_event_an_erasure_is_found_by_the_sealed_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled_log(path, 4)
    log.record("dpo", "erase", {"doc_id": "d1", "chunks_removed": 3})
    write_lines(path, lines_of(path)[:-1])  # the erasure is gone; the chain is still a chain

    result = log.verify()

    assert (result.ok, result.first_bad_line) == (False, 5)
    assert "the log ends at event 4, its head says 5" in result.problem
    assert "event 5 was removed" in result.problem
    with pytest.raises(AuditError, match="does not match its head.*event 5 was removed"):
        log.record("alice", "search", {"query": "on top", "chunk_ids": []})
    assert len(lines_of(path)) == 4  # nothing was recorded over the gap


def test_deleting_the_head_of_a_sealed_log_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled_log(path, 3)
    write_lines(path, lines_of(path)[:-1])
    head_of(path).unlink()

    result = log.verify()

    assert not result.ok and "audit.jsonl.head is missing" in result.problem
    with pytest.raises(AuditError, match="is missing"):
        log.record("alice", "search", {"query": "x", "chunk_ids": []})


def test_emptying_a_sealed_log_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled_log(path, 3)
    path.write_text("")
    assert "the log is empty, its head says it ends at event 3" in log.verify().problem
    with pytest.raises(AuditError, match="events were removed"):
        log.record("alice", "search", {"query": "x", "chunk_ids": []})


def test_a_log_shortened_and_resealed_without_the_key_fails(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, retention_days=30, key=KEY)
    for number in range(4):
        log.record("alice", "search", {"query": f"q{number}", "chunk_ids": []})
    log.record("dpo", "erase", {"doc_id": "d1", "chunks_removed": 3})
    assert log.verify().signed
    # someone who can write the data folder drops the erasure and writes the matching head
    write_lines(path, lines_of(path)[:-1])
    last = json.loads(lines_of(path)[-1])
    head = json.loads(head_of(path).read_text())
    head.update(seq=last["seq"], hash=last["hash"], ts=last["ts"])
    without_mac = {name: value for name, value in head.items() if name != "mac"}
    head_of(path).write_text(json.dumps(without_mac))
    assert AuditLog(path, retention_days=30).verify().ok  # what no key can tell apart

    unsigned = log.verify()
    assert not unsigned.ok and "not signed with the key" in unsigned.problem

    other = AuditLog(path, retention_days=30, key=os.urandom(32))
    other._write_head(other._read_head())  # type: ignore[arg-type]  # signed with another key
    resigned = log.verify()
    assert not resigned.ok and "signature of the head" in resigned.problem
    with pytest.raises(AuditError, match="does not match its head"):
        log.record("alice", "search", {"query": "x", "chunk_ids": []})


def test_an_event_appended_after_the_head_without_the_key_fails(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, retention_days=30, key=KEY)
    for number in range(3):
        log.record("alice", "search", {"query": f"q{number}", "chunk_ids": []})
    last = json.loads(lines_of(path)[-1])
    forged = {"ts": last["ts"], "seq": 4, "user": "alice", "action": "login",
              "detail": {}, "prev": last["hash"]}  # fmt: skip
    forged["hash"] = event_hash(forged)
    with path.open("a") as out:
        out.write(json.dumps(forged) + "\n")

    result = log.verify()

    assert (result.ok, result.first_bad_line) == (False, 4)
    assert "not signed with the key" in result.problem


@pytest.mark.parametrize("key", [None, KEY], ids=["unsigned", "signed"])
def test_a_head_left_behind_by_a_crash_is_caught_up_by_the_next_event(
    tmp_path: Path, key: bytes | None
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, retention_days=30, key=key)
    for number in range(3):
        log.record("alice", "search", {"query": f"q{number}", "chunk_ids": []})
    before_last = head_of(path).read_text()
    log.record("alice", "logout", {"reason": "user"})
    head_of(path).write_text(before_last)  # the process died between the append and the head

    lagging = log.verify()
    assert lagging.ok and lagging.sealed and "lags 1 events" in lagging.note
    log.record("alice", "login", {})
    assert (log.verify().ok, log.verify().note) == (True, "")
    assert json.loads(head_of(path).read_text())["seq"] == 5


def test_the_head_is_private_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled_log(path, 2)
    assert head_of(path).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "audit.jsonl", "audit.jsonl.head", "audit.jsonl.lock"
    ]  # fmt: skip


# -- retention checkpoints ---------------------------------------------------------------------


def test_dropping_the_first_events_behind_a_forged_checkpoint_is_found_by_the_head(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    log, clock = daily_log(path, 10)
    lines = lines_of(path)
    checkpoint = forged_checkpoint(lines[3], clock.now, clock.now - timedelta(days=30), 3)
    write_lines(path, [checkpoint, *lines[3:]])  # days 0 to 2 are gone

    result = log.verify()

    assert (result.ok, result.first_bad_line) == (False, 1)
    assert "the log starts at event 3, its head says 1" in result.problem


def test_a_checkpoint_dropping_events_within_the_retention_period_is_found(
    tmp_path: Path,
) -> None:
    path, clock = tmp_path / "audit.jsonl", Clock()
    legacy_log(path, [clock.now + timedelta(days=day) for day in range(10)])
    log = AuditLog(path, retention_days=30, clock=clock)
    clock.now += timedelta(days=10)
    assert log.verify().ok and not log.verify().sealed  # not sealed: no head to hold it to
    lines = lines_of(path)
    cut_off = datetime.fromisoformat(json.loads(lines[3])["ts"])  # days 0 to 2, ten days ago
    write_lines(path, [forged_checkpoint(lines[3], clock.now, cut_off, 3), *lines[3:]])

    result = log.verify()

    assert (result.ok, result.first_bad_line) == (False, 1)
    assert "within the retention period of 30 days" in result.problem


def test_a_checkpoint_dated_in_the_future_is_found(tmp_path: Path) -> None:
    path, clock = tmp_path / "audit.jsonl", Clock()
    legacy_log(path, [clock.now + timedelta(days=day) for day in range(10)])
    log = AuditLog(path, retention_days=30, clock=clock)
    lines = lines_of(path)
    future = clock.now + timedelta(days=40)  # so that its cut-off lies after day 2
    write_lines(path, [forged_checkpoint(lines[3], future, future - timedelta(days=30), 3),
                       *lines[3:]])  # fmt: skip

    result = log.verify()

    assert not result.ok and "in the future" in result.problem


def test_a_checkpoint_after_the_first_line_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log, clock = daily_log(path, 5)
    lines = lines_of(path)
    checkpoint = forged_checkpoint(lines[3], clock.now, clock.now - timedelta(days=30), 0)
    write_lines(path, [*lines[:3], checkpoint, *lines[3:]])
    result = log.verify()
    assert (result.ok, result.first_bad_line) == (False, 4)
    assert "may only start the log" in result.problem


def test_a_forged_checkpoint_and_head_without_the_key_fail(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log, clock = daily_log(path, 10, key=KEY)
    lines = lines_of(path)
    checkpoint = forged_checkpoint(lines[3], clock.now, clock.now - timedelta(days=30), 3)
    write_lines(path, [checkpoint, *lines[3:]])
    head = json.loads(head_of(path).read_text())
    head.update(first_seq=3, first_hash=json.loads(checkpoint)["hash"])
    head_of(path).write_text(json.dumps(head))  # the old signature no longer fits
    assert AuditLog(path, retention_days=30, clock=clock).verify().ok  # what no key can tell

    result = log.verify()

    assert not result.ok and "signature of the head" in result.problem


def test_retention_under_a_key_keeps_the_log_sealed_and_signed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log, clock = daily_log(path, 40, key=KEY)
    result = log.verify()
    assert result.ok and result.signed, result.problem
    checkpoint, first_kept = (json.loads(line) for line in lines_of(path)[:2])
    assert checkpoint["action"] == "retention" and checkpoint["seq"] == first_kept["seq"] - 1
    head = json.loads(head_of(path).read_text())
    assert (head["first_seq"], head["first_hash"]) == (checkpoint["seq"], checkpoint["hash"])
    assert head["seq"] == 40


def test_raising_the_retention_period_keeps_an_earlier_checkpoint_valid(tmp_path: Path) -> None:
    path, clock = tmp_path / "audit.jsonl", Clock()
    log = AuditLog(path, retention_days=1, clock=clock)
    log.record("alice", "login", {})
    clock.now += timedelta(days=3)
    log.record("alice", "login", {})
    assert json.loads(lines_of(path)[0])["action"] == "retention"
    raised = AuditLog(path, retention_days=365, clock=clock)
    assert raised.verify().ok, raised.verify().problem


# -- logs from before sealing, sealing by hand, the key -----------------------------------------


def test_a_log_written_before_sealing_verifies_and_is_sealed_by_the_next_event(
    tmp_path: Path,
) -> None:
    path, clock = tmp_path / "audit.jsonl", Clock()
    legacy_log(path, [clock.now + timedelta(minutes=minute) for minute in range(3)])
    clock.now += timedelta(hours=1)
    log = AuditLog(path, retention_days=30, clock=clock)
    unsealed = log.verify()
    assert (unsealed.ok, unsealed.sealed) == (True, False)
    assert "not sealed yet" in unsealed.note

    event = log.record("alice", "logout", {"reason": "user"})

    assert event.seq == 4 and log.verify().sealed
    write_lines(path, lines_of(path)[:-1])
    assert "the log ends at event 3, its head says 4" in log.verify().problem


def test_with_a_key_an_unsigned_log_fails_until_an_operator_seals_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    filled_log(path, 3)  # sealed, not signed: the key is set afterwards
    log = AuditLog(path, retention_days=30, key=KEY)
    assert "not signed with the key" in log.verify().problem
    with pytest.raises(AuditError, match="rag audit --seal"):
        log.record("alice", "search", {"query": "x", "chunk_ids": []})

    sealed = log.seal("operator")

    assert sealed == {"sealed": True, "signed": True, "seq": 4, "events": 4,
                      "previous": log.verify().problem or sealed["previous"]}  # fmt: skip
    assert "not signed" in sealed["previous"]
    assert log.verify().ok and log.verify().signed
    (seal,) = log.events(1)
    assert (seal.user, seal.action, seal.detail["events"]) == ("operator", "seal", 3)
    log.record("alice", "search", {"query": "x", "chunk_ids": []})
    assert log.verify().signed


def test_seal_goes_on_from_a_shortened_log_and_records_what_its_head_said(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled_log(path, 5)
    write_lines(path, lines_of(path)[:-2])
    log.seal("operator")
    (seal,) = log.events(1)
    assert "events 4 to 5 were removed" in seal.detail["head"]
    assert log.verify().ok
    assert log.record("alice", "login", {}).seq == 5


def test_seal_refuses_a_broken_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = filled_log(path, 4)
    lines = lines_of(path)
    write_lines(path, [lines[0], *lines[2:]])
    with pytest.raises(AuditError, match="can't be sealed.*line 2"):
        log.seal("operator")


def test_an_exposed_short_or_misplaced_key_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    key_file = tmp_path / "audit.key"
    key_file.write_bytes(os.urandom(48).hex().encode() + b"\n")
    key_file.chmod(0o600)

    def audit(key_path: Path) -> AuditLog:
        return build_audit(Settings(data_dir=data, audit=AuditSettings(key_file=key_path)))

    assert audit(key_file).signed
    key_file.chmod(0o644)
    with pytest.raises(AuditError, match="chmod 600"):
        audit(key_file)
    inside = data / "audit.key"
    inside.write_bytes(os.urandom(48))
    inside.chmod(0o600)
    with pytest.raises(AuditError, match="outside|inside RAG_DATA_DIR"):
        audit(inside)
    short = tmp_path / "short.key"
    short.write_bytes(b"password")
    short.chmod(0o600)
    with pytest.raises(AuditError, match="at least 32"):
        audit(short)


# -- showing events as text ------------------------------------------------------------------


def test_printable_escapes_control_format_and_separator_characters() -> None:
    forged = "mallory\n2026-01-01  admin  login\x1b[2K\x9b\u202eknat\u2028\x7f\ud800"
    assert printable(forged) == (
        "mallory\\x0a2026-01-01  admin  login\\x1b[2K\\x9b\\u202eknat\\u2028\\x7f\\ud800"
    )
    assert printable("Zoë Müller 東京 ok") == "Zoë Müller 東京 ok"
