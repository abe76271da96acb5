"""The `rag` command as operators and scripts use it: JSON shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from settings import Settings
from tests.conftest import RAG, SAMPLE_SHARE, free_port

INGEST_KEYS = {"files_seen", "indexed", "updated", "unchanged", "deleted", "failed", "pages",
               "chunks", "seconds"}  # fmt: skip


def rag(
    env: dict[str, str], *args: str, stdin: str = "", timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RAG), *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def rag_json(env: dict[str, str], *args: str, stdin: str = "", expect: int = 0) -> Any:
    result = rag(env, *args, "--json", stdin=stdin)
    assert result.returncode == expect, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("rag")]
    assert len(lines) == 1, result.stderr


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "share"
    shutil.copytree(SAMPLE_SHARE, root)
    (root / "hr").mkdir()
    private = root / "hr" / "salary-bands.md"
    private.write_text("# Salary bands\n\nThe salary band for senior engineers is EUR 91,000.\n")
    private.chmod(0o600)  # readable by its owner only
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, share: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path_factory.mktemp("cli-data"))
    env["RAG_LLM__PORT"] = str(free_port())  # nothing listens there
    env["RAG_UI__PORT"] = str(free_port())
    env["RAG_API__PORT"] = str(free_port())
    report = rag_json(env, "ingest", str(share))
    assert report["failed"] == [], report
    return env


def test_ingest_prints_the_contract_report(env: dict[str, str], share: Path) -> None:
    report = rag_json(env, "ingest", str(share))
    assert set(report) >= INGEST_KEYS
    assert all(isinstance(report[k], int) for k in INGEST_KEYS - {"failed", "seconds"})
    assert (report["files_seen"], report["unchanged"], report["indexed"]) == (7, 7, 0)


def test_ingest_lists_failed_files_and_exits_zero(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "ok.md").write_text("# Fire drill\n\nThe fire drill is on the first Monday.\n")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 truncated")
    report = rag_json(env, "ingest", str(tmp_path))
    assert report["indexed"] == 1
    assert [Path(f["path"]).name for f in report["failed"]] == ["bad.pdf"]
    assert report["failed"][0]["error"]


def test_ingest_of_a_missing_root_exits_2_with_one_line(env: dict[str, str]) -> None:
    result = rag(env, "ingest", "/no/such/share", "--json")
    assert result.returncode == 2
    assert_one_line_error(result)
    assert "no such file or folder" in json.loads(result.stdout)["error"]


def test_search_returns_hits_best_first_with_absolute_paths(
    env: dict[str, str], share: Path
) -> None:
    hits = rag_json(env, "search", "approved budget IT Modernisation Programme", "--k", "3")["hits"]
    assert len(hits) == 3
    assert set(hits[0]) == {"path", "page", "score", "text", "doc_id", "chunk_id"}
    assert hits[0]["path"] == str(share / "finance" / "board-minutes-2026-03.pdf")
    assert hits[0]["page"] == 2
    assert "EUR 1,980,000" in hits[0]["text"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(
        Path(h["path"]).is_absolute() and (h["page"] is None or h["page"] >= 1) for h in hits
    )


def test_search_as_a_user_sees_only_what_the_share_lets_them_read(env: dict[str, str]) -> None:
    rag_json(env, "users", "add", "alice", "--groups", "staff", stdin="alice-password\n")
    query = ("search", "salary band senior engineers", "--k", "10")
    as_operator = {Path(h["path"]).name for h in rag_json(env, *query)["hits"]}
    as_alice = {Path(h["path"]).name for h in rag_json(env, *query, "--user", "alice")["hits"]}
    assert "salary-bands.md" in as_operator
    assert "salary-bands.md" not in as_alice
    assert as_alice  # the world-readable policies are still found


def test_an_admin_reads_only_their_own_documents_unless_configured(env: dict[str, str]) -> None:
    rag_json(env, "users", "add", "ada", "--groups", "it", "--admin", stdin="ada-password\n")
    query = ("search", "salary band senior engineers", "--k", "10", "--user", "ada")
    as_admin = {Path(h["path"]).name for h in rag_json(env, *query)["hits"]}
    assert "salary-bands.md" not in as_admin
    everything = {**env, "RAG_ACCESS__ADMINS_READ_EVERYTHING": "true"}
    assert "salary-bands.md" in {Path(h["path"]).name for h in rag_json(everything, *query)["hits"]}


def test_an_unknown_user_exits_2(env: dict[str, str]) -> None:
    result = rag(env, "search", "budget", "--user", "mallory")
    assert result.returncode == 2
    assert_one_line_error(result)
    assert "unknown user" in result.stderr


def test_users_add_and_list(env: dict[str, str]) -> None:
    added = rag_json(env, "users", "add", "bob", "--groups", "finance,staff", "--admin",
                     stdin="bob-password\n")  # fmt: skip
    assert added == {"user": "bob", "groups": ["finance", "staff"], "admin": True}
    names = [u["user"] for u in rag_json(env, "users", "list")["users"]]
    assert "bob" in names
    assert rag_json(env, "users", "remove", "bob") == {"removed": "bob"}
    assert "bob" not in [u["user"] for u in rag_json(env, "users", "list")["users"]]
    again = rag(env, "users", "remove", "bob")
    assert again.returncode == 2 and "unknown user" in again.stderr


def test_status_reports_documents_chunks_store_and_llm(env: dict[str, str]) -> None:
    status = rag_json(env, "status")
    assert {"documents", "chunks", "failed", "store", "llm"} <= set(status)
    assert status["documents"] >= 7 and status["chunks"] == status["store"]["chunks"] > 0
    assert status["llm"]["reachable"] is False


def test_doctor_reports_each_check_and_fails_without_an_llm(env: dict[str, str]) -> None:
    result = rag(env, "doctor", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is False and checks["llm_server"]["ok"] is False
    for name in ("offline_switches", "embedder_model", "llm_model", "spacy_model",
                 "ocr_languages", "pdf_renderer", "store"):  # fmt: skip
        assert checks[name]["ok"], checks[name]


def test_ask_without_an_llm_server_exits_1_with_a_hint(env: dict[str, str]) -> None:
    result = rag(env, "ask", "What is the approved budget of the Harbour Renovation Project?")
    assert result.returncode == 1
    assert_one_line_error(result)
    assert "rag up" in result.stderr


def test_bad_arguments_exit_2(env: dict[str, str]) -> None:
    for args in (("search",), ("frobnicate",), ("search", "x", "--k", "many")):
        result = rag(env, *args)
        assert result.returncode == 2, args
        assert_one_line_error(result)


def test_an_oversized_question_or_search_exits_2_with_one_line(env: dict[str, str]) -> None:
    long = "What is the approved budget of the Harbour Renovation Project? " * 50
    for command in ("ask", "search"):
        result = rag(env, command, long)
        assert result.returncode == 2, result.stderr
        assert_one_line_error(result)
        assert "3,149 characters, more than the 2,000 allowed" in result.stderr
        assert "Harbour" not in result.stderr
    refused = rag_json({**env, "RAG_RETRIEVAL__MAX_QUESTION_CHARS": "20"}, "ask", long[:40],
                       expect=2)  # fmt: skip
    assert refused == {"error": "the question has 40 characters, more than the 20 allowed; "
                                "shorten it and ask again"}  # fmt: skip


@pytest.mark.integration
def test_ask_and_doctor_with_the_real_llm_server(
    env: dict[str, str], llm_settings: Settings
) -> None:
    live = {**env, "RAG_LLM__PORT": str(llm_settings.llm.port)}
    answer = rag_json(live, "ask", "What is the approved budget of the Harbour Renovation Project?")
    assert set(answer) == {"answer", "refused", "citations"}
    assert answer["refused"] is False and "4,750,000" in answer["answer"]
    assert [Path(c["path"]).name for c in answer["citations"]] == ["harbour-renovation-memo.png"]
    assert set(answer["citations"][0]) == {"path", "page", "chunk_id"}
    refused = rag_json(live, "ask", "Who won the football world cup in 2014?")
    assert refused == {"answer": refused["answer"], "refused": True, "citations": []}
    assert rag_json(live, "doctor")["ok"] is True


@pytest.mark.integration
def test_up_starts_the_api_and_ui_idempotently_and_down_stops_them(
    env: dict[str, str], llm_settings: Settings
) -> None:
    live = {**env, "RAG_LLM__BASE_URL": llm_settings.llm.resolved_base_url()}
    started = rag_json(live, "up")
    ui_url, api_url = started["ui_url"], started["api_url"]
    assert started["llm_url"] == llm_settings.llm.resolved_base_url()
    assert api_url == f"http://127.0.0.1:{env['RAG_API__PORT']}/"
    assert httpx.get(ui_url + "_stcore/health", trust_env=False).is_success
    assert httpx.get(api_url + "v1/models", trust_env=False).status_code == 401  # no token
    began = time.monotonic()
    assert rag_json(live, "up") == started
    assert time.monotonic() - began < 20
    assert rag_json(live, "down") == {}
    for stopped in (ui_url + "_stcore/health", api_url + "healthz"):
        with pytest.raises(httpx.HTTPError):
            httpx.get(stopped, trust_env=False, timeout=2)
    assert rag_json(live, "down") == {}


def test_watch_mode_picks_up_new_files_and_stops_on_ctrl_c(
    env: dict[str, str], tmp_path: Path
) -> None:
    share = tmp_path / "watched"
    share.mkdir()
    (share / "a.md").write_text("# Keys\n\nKeys are issued at the front desk.\n")
    process = subprocess.Popen(
        [str(RAG), "ingest", str(share), "--watch", "1", "--workers", "1", "--json"],
        env={**env, "RAG_DATA_DIR": str(tmp_path / "data")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    passes = []
    try:
        for line in process.stderr:
            if '"ingest_pass"' not in line:
                continue
            passes.append(json.loads(line))
            if len(passes) == 1:
                (share / "b.md").write_text("# Parking\n\nPermits cost EUR 40.\n")
            if len(passes) >= 2 and passes[-1]["indexed"] == 1:
                break
            assert len(passes) < 10, passes
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert passes[0]["indexed"] == 1 and passes[-1]["indexed"] == 1
    assert process.returncode == 0
    assert json.loads(stdout) == {}


def test_watch_mode_goes_on_when_a_share_cannot_be_reached(
    env: dict[str, str], tmp_path: Path
) -> None:
    password = tmp_path / "smb-password"
    password.write_text("secret\n")
    password.chmod(0o600)
    unreachable = f"smb://127.0.0.1:{free_port()}/docs"  # nothing listens there
    process = subprocess.Popen(
        [str(RAG), "ingest", unreachable, "--watch", "1", "--workers", "1", "--json"],
        env={**env, "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_SMB__USERNAME": "svc-rag",
             "RAG_SMB__PASSWORD_FILE": str(password), "RAG_SMB__TIMEOUT_SECONDS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert process.stderr is not None
    events = []
    try:
        for line in process.stderr:
            if '"ingest_pass' in line:
                events.append(json.loads(line))
            if len(events) == 2:
                break
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert [event["event"] for event in events] == ["ingest_pass_failed"] * 2
    assert unreachable in events[0]["error"]
    assert process.returncode == 0
