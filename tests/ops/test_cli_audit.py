"""`rag audit`: the events the commands record, newest first, and the chain check."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appliance.audit import AuditLog
from tests.conftest import free_port
from tests.ops.test_cli import assert_one_line_error, rag, rag_json

SECRET_SENTENCE = "The vault combination for the Lyon archive is 7-31-44-09."


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    share = tmp_path_factory.mktemp("audit-share")
    share.chmod(0o755)  # a share everyone may enter (pytest makes its folders private)
    (share / "vault.md").write_text(f"# Archive vault\n\n{SECRET_SENTENCE}\n")
    (share / "canteen.md").write_text("# Canteen\n\nThe canteen opens at 11:30 on weekdays.\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path_factory.mktemp("audit-data"))
    env["RAG_LLM__PORT"] = str(free_port())  # nothing listens there
    report = rag_json(env, "ingest", str(share))
    assert report["indexed"] == 2, report
    return env


def audit_file(env: dict[str, str]) -> Path:
    return Path(env["RAG_DATA_DIR"]) / "audit.jsonl"


def head_file(env: dict[str, str]) -> Path:
    return Path(env["RAG_DATA_DIR"]) / "audit.jsonl.head"


def test_commands_record_who_did_what_without_document_text(env: dict[str, str]) -> None:
    rag_json(env, "users", "add", "alice", "--groups", "staff,ops", stdin="alice-password\n")
    hits = rag_json(env, "search", "vault combination Lyon archive", "--user", "alice")["hits"]
    assert hits and SECRET_SENTENCE in hits[0]["text"]
    refusing = {**env, "RAG_RETRIEVAL__MIN_SCORE": "0.99"}  # refused before any model call
    answer = rag_json(refusing, "ask", "How many penguins live in Antarctica?")
    assert answer["refused"] is True

    ask, search, user_add = rag_json(env, "audit", "--limit", "3")["events"]
    assert set(ask) == {"ts", "user", "action", "detail"}
    assert (user_add["user"], user_add["action"]) == ("operator", "user_add")
    assert user_add["detail"] == {
        "user": "alice", "groups": ["ops", "staff"], "admin": False, "via": "cli"
    }  # fmt: skip
    assert (search["user"], search["action"]) == ("alice", "search")
    assert search["detail"] == {
        "query": "vault combination Lyon archive",
        "chunk_ids": [hit["chunk_id"] for hit in hits],
        "ms": search["detail"]["ms"],
        "via": "cli",
    }
    assert isinstance(search["detail"]["ms"], int) and search["detail"]["ms"] >= 0
    assert (ask["user"], ask["action"]) == ("operator", "ask")
    assert ask["detail"] == {
        "query": "How many penguins live in Antarctica?", "chunk_ids": [], "refused": True,
        "passages": ask["detail"]["passages"], "ms": ask["detail"]["ms"], "via": "cli",
    }  # fmt: skip
    assert isinstance(ask["detail"]["ms"], int) and ask["detail"]["ms"] >= 0
    assert ask["ts"] >= search["ts"] >= user_add["ts"]

    written = audit_file(env).read_text(encoding="utf-8")
    assert "alice-password" not in written
    assert SECRET_SENTENCE not in written and "7-31-44-09" not in written
    assert all(hit["text"] not in written for hit in hits)


def test_limit_and_human_output(env: dict[str, str]) -> None:
    rag_json(env, "users", "add", "bob", stdin="bob-password\n")
    (newest,) = rag_json(env, "audit", "--limit", "1")["events"]
    assert newest["detail"]["user"] == "bob"
    everything = rag_json(env, "audit", "--limit", "0")["events"]
    assert len(everything) == len(audit_file(env).read_text().splitlines())
    shown = rag(env, "audit", "--limit", "1")
    assert shown.returncode == 0
    assert "operator" in shown.stdout and "user_add" in shown.stdout and '"bob"' in shown.stdout


def test_a_negative_limit_exits_2(env: dict[str, str]) -> None:
    result = rag(env, "audit", "--limit", "-1", "--json")
    assert result.returncode == 2
    assert_one_line_error(result)


def test_verify_passes_then_finds_the_edited_line(env: dict[str, str]) -> None:
    rag_json(env, "users", "add", "carol", stdin="carol-password\n")
    intact = rag_json(env, "audit", "--verify")
    assert intact["ok"] is True and intact["first_bad_line"] is None and intact["events"] >= 1

    path = audit_file(env)
    original = path.read_text(encoding="utf-8")
    lines = original.splitlines()
    event = json.loads(lines[0])
    event["user"] = "somebody-else"
    lines[0] = json.dumps(event)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        broken = rag_json(env, "audit", "--verify", expect=1)
        assert (broken["ok"], broken["first_bad_line"]) == (False, 1)
        assert "line 1" in broken["problem"]
        human = rag(env, "audit", "--verify")
        assert human.returncode == 1 and "BROKEN" in human.stdout
    finally:
        path.write_text(original, encoding="utf-8")
    assert rag_json(env, "audit", "--verify")["ok"] is True


def test_verify_names_the_events_removed_from_the_end_and_seal_goes_on(
    env: dict[str, str],
) -> None:
    rag_json(env, "users", "add", "dave", stdin="dave-password\n")
    path, head = audit_file(env), head_file(env)
    original, original_head = path.read_text(encoding="utf-8"), head.read_text(encoding="utf-8")
    lines = original.splitlines()
    intact = rag_json(env, "audit", "--verify")
    assert (intact["ok"], intact["sealed"], intact["signed"]) == (True, True, False)
    path.write_text("".join(line + "\n" for line in lines[:-1]), encoding="utf-8")
    try:
        broken = rag_json(env, "audit", "--verify", expect=1)
        assert (broken["ok"], broken["first_bad_line"]) == (False, len(lines))
        assert f"event {len(lines)} was removed" in broken["problem"]
        human = rag(env, "audit", "--verify")
        assert human.returncode == 1 and "BROKEN" in human.stdout and "was removed" in human.stdout
        refused = rag(env, "search", "canteen", "--json")
        assert refused.returncode == 1 and "rag audit --seal" in refused.stderr
        assert_one_line_error(refused)

        sealed = rag_json(env, "audit", "--seal")
        assert sealed["seq"] == len(lines) and "was removed" in sealed["previous"]
        assert rag_json(env, "audit", "--verify")["ok"] is True
        (seal,) = rag_json(env, "audit", "--limit", "1")["events"]
        assert (seal["user"], seal["action"]) == ("operator", "seal")
    finally:
        path.write_text(original, encoding="utf-8")
        head.write_text(original_head, encoding="utf-8")
    assert rag_json(env, "audit", "--verify")["ok"] is True


def test_a_username_with_a_newline_and_escape_codes_prints_no_forged_line(
    env: dict[str, str],
) -> None:
    forged = (
        "mallory\n2026-01-01T00:00:00.000000+00:00  admin            user_add     "
        '{"name": "mallory", "admin": true}\x1b[1A\x1b[2K\u202e\x9b\x7f'
    )
    AuditLog(audit_file(env), 365).record(forged, "login_failed", {"name": forged})

    shown = rag(env, "audit", "--limit", "1")

    assert shown.returncode == 0
    assert shown.stdout.count("\n") == 1  # one event, one line
    assert not any(char in shown.stdout for char in "\x1b\u202e\x9b\x7f")
    assert "mallory\\x0a2026-01-01" in shown.stdout and "\\u202e" in shown.stdout
    (event,) = rag_json(env, "audit", "--limit", "1")["events"]
    assert event["user"] == forged and event["detail"] == {"name": forged}  # JSON stays exact
