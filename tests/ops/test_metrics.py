"""`rag metrics`: ingestion, failures, queue and latencies, in the Prometheus text format,
printed, served over HTTP and written for node_exporter, from a real ledger and audit log."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from appliance.audit import AuditLog
from ingest.progress_file import FileProgress
from ops.metrics import audit_tally, collect, format_families
from settings import Settings
from tests.conftest import RAG, free_port
from tests.ops.test_cli import rag, rag_json

SEARCHES = ("canteen opening hours", "parking permit price", "canteen weekdays")

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)"
_SAMPLE = re.compile(rf"^({_NAME})(\{{{_LABEL}(?:,{_LABEL})*\}})? ({_VALUE})$")
_HELP = re.compile(rf"^# HELP ({_NAME}) (.*)$")
_TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",)}


def parse_exposition(text: str) -> dict[str, float]:
    """The samples of a text exposition, `{name{labels}: value}`; fails on any line that is not
    HELP, TYPE or a sample of the family declared just above it."""
    assert text.endswith("\n")
    samples: dict[str, float] = {}
    family, kind, declared = "", "", set()
    for line in text.splitlines():
        if match := _HELP.match(line):
            family, kind = match[1], ""
            assert family not in declared, f"family declared twice: {family}"
            declared.add(family)
        elif match := _TYPE.match(line):
            assert match[1] == family, f"TYPE without its HELP: {line}"
            kind = match[2]
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            assert kind, f"sample before its TYPE: {line}"
            assert match[1] in {family + suffix for suffix in _SUFFIXES[kind]}, line
            key = match[1] + (match[2] or "")
            assert key not in samples, f"sample twice: {key}"
            samples[key] = float(match[3])
    return samples


def families_of(samples: dict[str, float]) -> set[str]:
    return {re.sub(r"(_bucket|_sum|_count)?(\{.*)?$", "", key) for key in samples}


def assert_histogram(samples: dict[str, float], name: str, count: int) -> None:
    buckets = sorted(
        (float(key.split('le="')[1].rstrip('"}')), value)
        for key, value in samples.items()
        if key.startswith(f"{name}_bucket{{")
    )
    assert buckets[-1] == (float("inf"), count)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:], strict=False)), buckets
    assert samples[f"{name}_count"] == count
    assert samples[f"{name}_sum"] >= 0


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    share = tmp_path_factory.mktemp("metrics-share")
    share.chmod(0o755)  # a share everyone may enter (pytest makes its folders private)
    (share / "canteen.md").write_text("# Canteen\n\nThe canteen opens at 11:30 on weekdays.\n")
    (share / "parking.md").write_text("# Parking\n\nA parking permit costs EUR 40 a month.\n")
    (share / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path_factory.mktemp("metrics-data"))
    env["RAG_LLM__PORT"] = str(free_port())  # nothing listens there
    env["RAG_INGEST__SHARES"] = json.dumps([str(share)])
    report = rag_json(env, "ingest", str(share))
    assert report["indexed"] == 2 and len(report["failed"]) == 1, report
    for query in SEARCHES:
        assert rag_json(env, "search", query)["hits"]
    return env


def metrics_text(env: dict[str, str]) -> str:
    result = rag(env, "metrics")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_metrics_count_documents_chunks_failures_and_search_latency(
    env: dict[str, str],
) -> None:
    samples = parse_exposition(metrics_text(env))
    status = rag_json(env, "status")
    assert samples['rag_documents{state="indexed"}'] == 2
    assert samples['rag_documents{state="failed"}'] == 1
    assert samples["rag_ingest_failures"] == 1
    assert samples["rag_chunks"] == status["chunks"] >= 2
    assert_histogram(samples, "rag_query_latency_seconds", len(SEARCHES))
    assert samples['rag_audit_events_total{action="search"}'] == len(SEARCHES)
    assert_histogram(samples, "rag_answer_latency_seconds", 0)
    assert samples["rag_answers_refused_total"] == 0


def test_metrics_report_the_last_ingestion_run(env: dict[str, str]) -> None:
    samples = parse_exposition(metrics_text(env))
    assert samples['rag_ingest_last_run_files{outcome="indexed"}'] == 2
    assert samples['rag_ingest_last_run_files{outcome="failed"}'] == 1
    assert 0 < samples["rag_ingest_last_run_seconds"] < 600
    assert abs(samples["rag_ingest_last_run_timestamp_seconds"] - time.time()) < 900
    assert samples["rag_ingest_queue_depth"] == 0 and samples["rag_ingest_running"] == 0


def test_a_refused_question_counts_with_its_latency(env: dict[str, str]) -> None:
    before = parse_exposition(metrics_text(env))
    refusing = {**env, "RAG_RETRIEVAL__MIN_SCORE": "2.0"}  # nothing relevant: no model needed
    assert rag_json(refusing, "ask", "How many penguins live in Antarctica?")["refused"]
    after = parse_exposition(metrics_text(env))
    assert after["rag_answers_refused_total"] == before["rag_answers_refused_total"] + 1
    count = before["rag_answer_latency_seconds_count"] + 1
    assert_histogram(after, "rag_answer_latency_seconds", int(count))


def test_json_carries_the_same_samples_as_the_text(env: dict[str, str]) -> None:
    text_samples = parse_exposition(metrics_text(env))
    json_samples = rag_json(env, "metrics")["metrics"]
    assert set(json_samples) == set(text_samples)
    assert json_samples['rag_documents{state="indexed"}'] == 2


def test_the_output_parses_with_the_prometheus_client(env: dict[str, str]) -> None:
    parser = next(
        (python for python in (Path(sys.executable), Settings().llm.server_python)
         if python.exists() and subprocess.run([python, "-c", "import prometheus_client"],
                                               capture_output=True).returncode == 0),
        None,
    )  # fmt: skip
    if parser is None:
        pytest.skip("no Python here has prometheus_client (the LLM server's environment does)")
    program = (
        "import json, sys\n"
        "from prometheus_client.parser import text_string_to_metric_families as parse\n"
        "print(json.dumps({f.name: [f.type, len(f.samples)] for f in parse(sys.stdin.read())}))"
    )
    parsed = subprocess.run(
        [parser, "-c", program], input=metrics_text(env), capture_output=True, text=True
    )
    assert parsed.returncode == 0, parsed.stderr
    families = json.loads(parsed.stdout)
    assert families["rag_query_latency_seconds"][0] == "histogram"
    assert families["rag_documents"] == ["gauge", 4]
    # The client names a counter family without its `_total`.
    assert families["rag_answers_refused"][0] == "counter"


def test_serve_answers_get_metrics_over_http(env: dict[str, str]) -> None:
    port = free_port()
    server = subprocess.Popen(
        [str(RAG), "metrics", "--serve", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        response = None
        deadline = time.monotonic() + 60
        while response is None and time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False)
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                time.sleep(0.2)
        assert response is not None and response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        served = parse_exposition(response.text)
        assert families_of(served) == families_of(parse_exposition(metrics_text(env)))
        assert served['rag_documents{state="indexed"}'] == 2
        missing = httpx.get(f"http://127.0.0.1:{port}/", trust_env=False)
        assert missing.status_code == 404
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    finally:
        server.kill()
    assert server.returncode == 0


def test_serve_on_a_port_in_use_is_one_line_error(env: dict[str, str]) -> None:
    port = free_port()
    holder = subprocess.Popen([str(RAG), "metrics", "--serve", str(port)], env=env,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stderr is not None and "serving metrics" in holder.stderr.readline()
        result = rag(env, "metrics", "--serve", str(port))
    finally:
        holder.send_signal(signal.SIGINT)
        holder.communicate(timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("rag: cannot listen on 127.0.0.1:") and "Traceback" not in (
        result.stderr
    )


def test_textfile_is_written_whole_for_node_exporter(env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "textfile" / "rag.prom"
    assert rag_json(env, "metrics", "--textfile", str(target)) == {"textfile": str(target)}
    samples = parse_exposition(target.read_text())
    assert samples['rag_documents{state="indexed"}'] == 2
    assert target.stat().st_mode & 0o777 == 0o644
    assert [path.name for path in target.parent.iterdir()] == ["rag.prom"]  # no temporary left


def test_every_without_textfile_is_a_usage_error(env: dict[str, str]) -> None:
    result = rag(env, "metrics", "--every", "5")
    assert result.returncode == 2 and "--textfile" in result.stderr


def test_queue_depth_counts_what_running_ingestions_have_left(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    watching = FileProgress(settings.run_dir / "ingest-watch.progress.json")
    watching.start(10)
    for number in range(4):
        time.sleep(0.6 if number == 3 else 0)  # progress is written at most twice a second
        watching.advance(f"/share/{number}.md", 1, 1)
    from_ui = FileProgress(settings.run_dir / "ui-ingest.progress.json")
    from_ui.start(3)
    from_ui.finish()  # a finished run has nothing left

    samples = parse_exposition(format_families(collect(settings)))
    assert samples["rag_ingest_queue_depth"] == 6 and samples["rag_ingest_running"] == 1

    a_day_later = time.time() + 86400  # the watcher was killed long ago: its queue is gone
    samples = parse_exposition(format_families(collect(settings, now=a_day_later)))
    assert samples["rag_ingest_queue_depth"] == 0 and samples["rag_ingest_running"] == 0


def test_watch_keeps_its_progress_where_metrics_read_the_queue(
    env: dict[str, str], tmp_path: Path
) -> None:
    share = tmp_path / "watched"
    share.mkdir()
    (share / "a.md").write_text("# Keys\n\nKeys are issued at the front desk.\n")
    data = tmp_path / "data"
    watched_env = {**env, "RAG_DATA_DIR": str(data)}
    process = subprocess.Popen(
        [str(RAG), "ingest", str(share), "--watch", "1", "--workers", "1", "--json"],
        env=watched_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        for line in process.stderr:
            if '"ingest_pass"' in line:
                break
        progress = json.loads((data / "run" / "ingest-watch.progress.json").read_text())
        assert (progress["total"], progress["done"]) == (1, 1)
        samples = parse_exposition(metrics_text(watched_env))
        assert samples['rag_documents{state="indexed"}'] == 1
        assert samples["rag_ingest_queue_depth"] == 0
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0


def test_audit_tally_reads_appended_events_and_starts_over_after_retention(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    now = datetime(2026, 1, 1, tzinfo=UTC)
    log = AuditLog(path, retention_days=30, clock=lambda: now)
    log.record("alice", "search", {"query": "q", "chunk_ids": [], "ms": 40})
    log.record("alice", "ask", {"query": "q", "chunk_ids": [], "refused": True, "ms": 900,
                                "first_token_ms": 300})  # fmt: skip
    first = audit_tally(path)
    assert (first.query.count, first.answer.count, first.first_token.count) == (1, 1, 1)
    assert first.refused == 1 and first.answer.total == pytest.approx(0.9)

    log.record("bob", "search", {"query": "q", "chunk_ids": [], "ms": 2600})
    log.record("bob", "search", {"query": "q", "chunk_ids": []})  # before latencies were kept
    appended = audit_tally(path)
    assert appended.actions["search"] == 3 and appended.query.count == 2
    assert appended.query.total == pytest.approx(2.64)

    later = AuditLog(path, retention_days=30, clock=lambda: now + timedelta(days=40))
    later.record("carol", "login", {"groups": [], "admin": False})  # drops the old events
    rewritten = audit_tally(path)
    assert dict(rewritten.actions) == {"login": 1}
    assert rewritten.query.count == 0 and rewritten.refused == 0
