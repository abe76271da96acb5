"""The audit log: a hash chain that shows edits, deletions and reordering, under concurrency
and retention."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retrieval.audit import AuditError, AuditLog
from settings import PROJECT_ROOT


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
    from retrieval.audit import AuditLog

    log = AuditLog(Path(sys.argv[1]), retention_days=30)
    while not Path(sys.argv[1] + ".go").exists():  # both start together
        time.sleep(0.001)
    for number in range(int(sys.argv[3])):
        log.record(sys.argv[2], "search", {"query": f"q{number}", "chunk_ids": []})
    """
)


def test_two_processes_appending_at_once_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), name, "300"], cwd=PROJECT_ROOT)
        for name in ("alice", "bob")
    ]
    time.sleep(1.0)  # both have imported and wait
    Path(f"{path}.go").touch()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    log = AuditLog(path, retention_days=30)
    result = log.verify()
    assert result.ok, result.problem
    assert result.events == 600
    users = [event.user for event in log.events(None)]
    assert users.count("alice") == users.count("bob") == 300


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
