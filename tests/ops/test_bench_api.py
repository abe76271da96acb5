"""The API benchmark at a small size: a real `rag serve` over the ingested sample share, the
session's LLM server, four clients for ten seconds, and its `api` line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

FIELDS = [
    "bench", "clients", "seconds", "requests", "searches", "asks", "errors_5xx", "errors_other",
    "search_p50_ms", "search_p95_ms", "ask_p50_ms", "ask_p95_ms", "throughput_rps",
    "baseline_search_p50_ms", "search_ratio",
]  # fmt: skip


def test_api_line_of_a_short_run_under_load(llm_settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    done = subprocess.run(
        [sys.executable, "-m", "ops.tools.bench_api", "--seconds", "10", "--clients", "4",
         "--llm-port", str(llm_settings.llm.port)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert list(line) == FIELDS
    assert (line["bench"], line["clients"], line["seconds"]) == ("api", 4, 10)
    assert line["errors_5xx"] == 0 and line["errors_other"] == 0
    assert line["requests"] == line["searches"] + line["asks"] > 0
    assert line["searches"] > 0 and line["asks"] > 0
    assert 0 < line["search_p50_ms"] <= line["search_p95_ms"]
    assert 0 < line["ask_p50_ms"] <= line["ask_p95_ms"]
    assert line["throughput_rps"] > 0
    assert line["baseline_search_p50_ms"] > 0
    ratio = line["search_p50_ms"] / line["baseline_search_p50_ms"]
    assert line["search_ratio"] == pytest.approx(ratio, abs=0.01)
    assert "bench_api: 4 clients for 10 s" in done.stderr  # progress goes to stderr
