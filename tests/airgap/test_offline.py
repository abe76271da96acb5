"""The whole path with no network at all: a namespace with only loopback.

Everything runs in it — the LLM server, the API, ingestion with OCR, search (from the CLI and
over the API with a user's token) and a cited answer — and the test first proves that
nothing outside this machine can be reached from inside.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RAG, SAMPLE_SHARE

PROBE = """
import socket, errno
for host, port in (("1.1.1.1", 443), ("10.0.0.1", 80)):
    s = socket.socket(); s.settimeout(3)
    assert s.connect_ex((host, port)) == errno.ENETUNREACH, host
try:
    socket.getaddrinfo("pypi.org", 443)
    raise SystemExit("DNS resolved inside the namespace")
except socket.gaierror:
    pass
print("isolated")
"""

SCRIPT = """
set -euo pipefail
ip link set lo up
test "$(ip -o link show | cut -d: -f2 | tr -d ' ')" = "lo"
"$PYTHON" -c "$PROBE" > "$OUT/probe.txt"
"$RAG" up --no-ui --json > "$OUT/up.json"
trap '"$RAG" down --json > "$OUT/down.json"' EXIT
"$RAG" ingest "$SHARE" --json > "$OUT/ingest.json"
"$RAG" search "approved budget of the Harbour Renovation Project" --k 1 --json > "$OUT/search.json"
"$RAG" ask "What is the approved budget of the Harbour Renovation Project?" --json > "$OUT/ask.json"
printf 'offline-reader-password\n' | "$RAG" users add offline-reader --json > "$OUT/user.json"
token="$("$RAG" tokens create offline-reader --json | "$PYTHON" -c "$FIELD" token)"
api_url="$("$PYTHON" -c "$FIELD" api_url < "$OUT/up.json")"
curl -sS --fail-with-body --noproxy '*' -H "Authorization: Bearer $token" \
  --json '{"query": "approved budget of the Harbour Renovation Project", "k": 1}' \
  "${api_url}v1/search" > "$OUT/api-search.json"
"""
FIELD = "import json, sys; print(json.load(sys.stdin)[sys.argv[1]])"


@pytest.mark.integration
def test_ingest_search_and_ask_work_with_no_network(tmp_path: Path) -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("the offline test needs unshare (util-linux) and ip (iproute2)")
    out = tmp_path / "out"
    out.mkdir()
    share = tmp_path / "share"
    shutil.copytree(SAMPLE_SHARE, share)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_DATA_DIR=str(tmp_path / "data"),
        RAG_LLM__STARTUP_TIMEOUT_SECONDS="900",
        OUT=str(out),
        SHARE=str(share),
        RAG=str(RAG),
        PYTHON=str(RAG.parent / "python"),
        PROBE=PROBE,
        FIELD=FIELD,
    )
    result = subprocess.run(
        ["unshare", "--net", "--", "bash", "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "probe.txt").read_text().strip() == "isolated"
    ingest = json.loads((out / "ingest.json").read_text())
    assert (ingest["indexed"], ingest["failed"]) == (6, [])
    hit = json.loads((out / "search.json").read_text())["hits"][0]
    assert hit["path"] == str(share / "finance" / "harbour-renovation-memo.png")
    answer = json.loads((out / "ask.json").read_text())
    assert answer["refused"] is False and "4,750,000" in answer["answer"]
    assert [c["path"] for c in answer["citations"]] == [hit["path"]]
    over_api = json.loads((out / "api-search.json").read_text())["hits"]
    assert [h["path"] for h in over_api] == [hit["path"]]
    assert json.loads((out / "down.json").read_text()) == {}
