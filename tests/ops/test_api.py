"""`rag serve` as clients use it: the official OpenAI SDK, curl, and the MCP SDK's client,
against the real LLM server, with per-user tokens over a share whose finance folder only one
group may read.

Host group `ragapi-fin` is created for the module (root only) and removed after it: alice is
in it, bob is not.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from appliance.audit import AuditLog
from ops.api.limits import RateLimiter
from settings import Settings
from tests.conftest import RAG, SAMPLE_SHARE, free_port, make_settings, serving_api

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("groupadd") is None,
        reason="needs root (chgrp to a test group)",
    ),
]

FIN = "ragapi-fin"
HARBOUR = "What is the approved budget of the Harbour Renovation Project?"
HARBOUR_FILE = "harbour-renovation-memo.png"


@dataclass(frozen=True)
class Api:
    url: str
    env: dict[str, str]
    share: Path
    settings: Settings
    alice: str  # tokens
    bob: str


def rag_json(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [str(RAG), *args, "--json"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, llm_settings: Settings) -> Iterator[Api]:
    if subprocess.run(["getent", "group", FIN], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "--system", FIN], check=True)
    root = tmp_path_factory.mktemp("api")
    share = root / "share"
    shutil.copytree(SAMPLE_SHARE, share)
    shutil.chown(share / "finance", "root", FIN)
    (share / "finance").chmod(0o750)
    for path in (share / "finance").iterdir():
        shutil.chown(path, "root", FIN)
        path.chmod(0o640)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {
        "RAG_DATA_DIR": str(root / "data"), "RAG_LLM__PORT": str(llm_settings.llm.port),
        "RAG_API__PORT": str(free_port()), "RAG_API__REQUESTS_PER_MINUTE": "1000",
    }  # fmt: skip
    assert rag_json(env, "ingest", str(share))["failed"] == []
    for name, groups in (("alice", FIN), ("bob", "")):
        done = subprocess.run(
            [str(RAG), "users", "add", name, "--groups", groups, "--json"], env=env,
            input=f"{name}-password\n", capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    alice = rag_json(env, "tokens", "create", "alice", "--name", "sdk")["token"]
    bob = rag_json(env, "tokens", "create", "bob", "--expires-days", "30")["token"]
    try:
        with serving_api(env) as url:
            yield Api(url, env, share, make_settings(root / "data"), alice, bob)
    finally:
        subprocess.run(["groupdel", FIN], capture_output=True)


def client(api: Api, token: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=api.url + "v1", api_key=token, max_retries=0,
        http_client=openai.DefaultHttpxClient(trust_env=False, timeout=300),
    )  # fmt: skip


def test_models_list_the_one_model(api: Api) -> None:
    assert [model.id for model in client(api, api.alice).models.list()] == ["rag"]


def test_a_cited_answer_through_the_openai_sdk(api: Api) -> None:
    reply = client(api, api.alice).chat.completions.create(
        model="anything", messages=[{"role": "user", "content": HARBOUR}], temperature=0.3
    )
    extra = reply.model_extra or {}
    assert "4,750,000" in (reply.choices[0].message.content or "")
    assert extra["refused"] is False
    assert [Path(c["path"]).name for c in extra["citations"]] == [HARBOUR_FILE]
    assert set(extra["citations"][0]) == {"path", "page", "chunk_id"}


def test_a_streamed_answer_ends_with_its_citations(api: Api) -> None:
    stream = client(api, api.alice).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": HARBOUR}], stream=True
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    last = chunks[-1].model_extra or {}
    assert "4,750,000" in text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert last["refused"] is False
    assert [Path(c["path"]).name for c in last["citations"]] == [HARBOUR_FILE]


def test_a_follow_up_in_a_conversation(api: Api) -> None:
    first = client(api, api.alice).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": HARBOUR}]
    )
    follow_up = client(api, api.alice).chat.completions.create(
        model="rag",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": HARBOUR},
            {"role": "assistant", "content": first.choices[0].message.content or ""},
            {"role": "user", "content": [{"type": "text", "text": "Which project was that?"}]},
        ],
    )
    extra = follow_up.model_extra or {}
    assert follow_up.choices[0].message.content
    assert extra["refused"] or all(Path(c["path"]).name == HARBOUR_FILE for c in extra["citations"])


def test_a_bad_token_is_refused_and_audited(api: Api) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(api, "rag_not-a-token").models.list()
    missing = httpx.post(api.url + "v1/search", json={"query": "budget"}, trust_env=False)
    assert missing.status_code == 401
    denied = [
        e for e in AuditLog(api.settings.audit_path, 365).events(20) if e.action == "api_denied"
    ]
    assert {e.detail["reason"] for e in denied} >= {"unknown token", "no bearer token"}
    written = api.settings.audit_path.read_text()
    assert "rag_not-a-token" not in written and api.alice not in written


def test_a_revoked_token_stops_working(api: Api) -> None:
    created = rag_json(api.env, "tokens", "create", "bob", "--name", "short-lived")
    assert client(api, created["token"]).models.list().data
    rag_json(api.env, "tokens", "revoke", created["id"])
    with pytest.raises(openai.AuthenticationError):
        client(api, created["token"]).models.list()
    listed = rag_json(api.env, "tokens", "list", "--user", "bob")["tokens"]
    assert created["token"] not in json.dumps(listed)
    assert next(t for t in listed if t["id"] == created["id"])["revoked"] is not None


def search(api: Api, token: str, query: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        api.url + "v1/search", json={"query": query, **extra}, trust_env=False, timeout=120,
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip


def test_search_answers_as_rag_search_does(api: Api) -> None:
    found = search(api, api.alice, "approved budget of the Harbour Renovation Project", k=3)
    assert found.status_code == 200
    by_cli = rag_json(
        api.env, "search", "approved budget of the Harbour Renovation Project", "--k", "3",
        "--user", "alice",
    )  # fmt: skip
    assert found.json() == by_cli
    assert Path(found.json()["hits"][0]["path"]).name == HARBOUR_FILE
    only_pdfs = search(api, api.alice, "budget", filters={"type": "pdf"}).json()["hits"]
    assert only_pdfs and all(hit["path"].endswith(".pdf") for hit in only_pdfs)
    assert search(api, api.alice, "budget", filters={"colour": "red"}).status_code == 400


def test_a_user_never_sees_what_they_may_not_read(api: Api) -> None:
    finance = str(api.share / "finance")
    hits = search(api, api.bob, "approved budget of the Harbour Renovation Project", k=10)
    assert hits.status_code == 200
    assert not any(hit["path"].startswith(finance) for hit in hits.json()["hits"])
    reply = client(api, api.bob).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": HARBOUR}]
    )
    extra = reply.model_extra or {}
    assert extra["refused"] is True and extra["citations"] == []
    assert "4,750,000" not in (reply.choices[0].message.content or "")


def test_curl_lists_the_models(api: Api) -> None:
    done = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-H", f"Authorization: Bearer {api.alice}",
         api.url + "v1/models"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data"][0]["id"] == "rag"


def test_oversized_bodies_and_long_questions_are_refused(api: Api) -> None:
    huge = search(api, api.alice, "x" * 1_100_000)
    assert huge.status_code == 413
    long = search(api, api.alice, "budget " * 1000)
    assert long.status_code == 400 and "characters" in long.json()["error"]["message"]


def test_the_rate_limit_answers_with_the_wait() -> None:
    now = [1000.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.retry_after("t1") == 0 and limiter.retry_after("t1") == 0
    wait = limiter.retry_after("t1")
    assert 1 <= wait <= 61
    assert limiter.retry_after("t2") == 0  # per token
    now[0] += 61
    assert limiter.retry_after("t1") == 0


def test_every_call_is_audited_with_its_token(api: Api) -> None:
    search(api, api.alice, "travel expenses policy")
    tokens = rag_json(api.env, "tokens", "list", "--user", "alice")["tokens"]
    events = AuditLog(api.settings.audit_path, 365).events(50)
    searched = next(e for e in events if e.action == "search" and e.user == "alice")
    assert searched.detail["via"] == "api"
    assert searched.detail["token"] in {token["id"] for token in tokens}


def test_mcp_lists_and_calls_the_tools(api: Api) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def session(token: str) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=300, trust_env=False
        )
        async with Client(streamable_http_client(api.url + "mcp", http_client=http)) as mcp:
            tools = sorted(tool.name for tool in (await mcp.list_tools()).tools)
            found = await mcp.call_tool("search", {"query": HARBOUR, "k": 3})
            asked = await mcp.call_tool("ask", {"question": HARBOUR})
            return tools, found.structured_content or {}, asked.structured_content or {}

    # In a thread of its own: a session's sync Playwright keeps an event loop running in
    # this one, where asyncio.run is refused.
    with ThreadPoolExecutor(1) as thread:
        tools, found, asked = thread.submit(asyncio.run, session(api.alice)).result()
    assert tools == ["ask", "search"]
    assert Path(found["hits"][0]["path"]).name == HARBOUR_FILE
    assert asked["refused"] is False and "4,750,000" in asked["answer"]
    assert [Path(c["path"]).name for c in asked["citations"]] == [HARBOUR_FILE]
    with ThreadPoolExecutor(1) as thread:
        _, found, asked = thread.submit(asyncio.run, session(api.bob)).result()
    finance = str(api.share / "finance")
    assert not any(hit["path"].startswith(finance) for hit in found["hits"])
    assert asked["refused"] is True and asked["citations"] == []
