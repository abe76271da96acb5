"""The whole path an operator and a user take, run by `test_zero_egress` inside a network
namespace with only loopback, under strace.

    python -m tests.airgap.egress_driver OUT SHARE

Runs `rag doctor`, `rag ingest SHARE` (OCR included), `rag search`, `rag up` (LLM server, API
and UI), `rag doctor` again, `rag users add`, `rag ask`, `rag tokens create`, then the API as a
user's tools call it (the OpenAI SDK: models, a chat completion, a streamed one; `/v1/search`; the
MCP SDK's client: the tools list and a `search` call), then a headless Chromium that signs in
and asks one question, then `rag down`. Each step's result goes to OUT/results.json; the test
reads it and the strace log. Exit status 0 when every step ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from ops.health import missing_switches
from settings import OFFLINE_ENVIRONMENT

HARBOUR_QUESTION = "What is the approved budget of the Harbour Renovation Project?"
HARBOUR_SEARCH = "approved budget of the Harbour Renovation Project"
ACCOUNT = ("egress-reader", "egress-reader-password")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rag(*args: str, stdin: str = "") -> dict[str, Any]:
    """Run `rag ARGS --json`; its exit status and its one JSON object."""
    command = [str(Path(sys.executable).parent / "rag"), *args, "--json"]
    # Without the offline switches: `rag` must set them itself, for every process it starts.
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENVIRONMENT}
    result = subprocess.run(
        command, input=stdin, env=env, capture_output=True, text=True, timeout=1800
    )
    try:
        output = json.loads(result.stdout)
    except json.JSONDecodeError:
        output = {"unparsed": result.stdout[-2000:]}
    return {"exit": result.returncode, "json": output, "stderr": result.stderr[-3000:]}


def service_switches(data_dir: Path) -> dict[str, list[str] | None]:
    """Offline switches missing from the environment of each service `rag up` started."""
    missing: dict[str, list[str] | None] = {}
    for name in ("llm-server", "api", "ui"):
        pid = service_pid(data_dir, name)
        missing[name] = missing_switches(pid) if pid is not None else None
    return missing


def service_pid(data_dir: Path, name: str) -> int | None:
    pid_file = data_dir / "run" / f"{name}.pid"
    return int(pid_file.read_text()) if pid_file.exists() else None


def threads_of(pid: int) -> set[int]:
    """The ids of a process's threads now: strace names each call by its thread's id."""
    try:
        return {int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()}
    except OSError:
        return set()


def call_api(api_url: str, token: str, api_pid: int) -> dict[str, Any]:
    """Models, a chat completion, a streamed one and a search through the OpenAI SDK and
    httpx, then the MCP tools list and a `search` call through the MCP SDK's client; what
    each returned, and the threads the API server had meanwhile."""
    import openai

    threads = threads_of(api_pid)
    http = openai.DefaultHttpxClient(trust_env=False, timeout=900)
    client = openai.OpenAI(base_url=api_url + "v1", api_key=token, max_retries=0, http_client=http)
    question = [{"role": "user", "content": HARBOUR_QUESTION}]
    results: dict[str, Any] = {"models": [model.id for model in client.models.list()]}
    threads |= threads_of(api_pid)
    reply = client.chat.completions.create(model="rag", messages=question)
    extra = reply.model_extra or {}
    results["chat"] = {
        "answer": reply.choices[0].message.content,
        "refused": extra.get("refused"),
        "citations": [c["path"] for c in extra.get("citations", [])],
    }
    threads |= threads_of(api_pid)
    chunks = list(client.chat.completions.create(model="rag", messages=question, stream=True))
    last = chunks[-1].model_extra or {}
    results["stream"] = {
        "answer": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
        "finish_reason": chunks[-1].choices[0].finish_reason,
        "refused": last.get("refused"),
        "citations": [c["path"] for c in last.get("citations", [])],
    }
    threads |= threads_of(api_pid)
    found = http.post(
        api_url + "v1/search", json={"query": HARBOUR_QUESTION, "k": 3},
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    results["search"] = {"status": found.status_code, "paths": hit_paths(found.json())}
    threads |= threads_of(api_pid)
    results["mcp"] = asyncio.run(call_mcp(api_url, token))
    threads |= threads_of(api_pid)
    results["api_threads"] = sorted(threads)
    return results


async def call_mcp(api_url: str, token: str) -> dict[str, Any]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=900, trust_env=False
    )
    async with Client(streamable_http_client(api_url + "mcp", http_client=http)) as mcp:
        tools = sorted(tool.name for tool in (await mcp.list_tools()).tools)
        found = await mcp.call_tool("search", {"query": HARBOUR_QUESTION, "k": 3})
    return {"tools": tools, "paths": hit_paths(found.structured_content or {})}


def hit_paths(reply: dict[str, Any]) -> list[str]:
    return [hit["path"] for hit in reply.get("hits", [])]


def browse(ui_url: str, origin: str) -> dict[str, Any]:
    """Sign in and ask one question in headless Chromium, as the browser tests do."""
    from playwright.sync_api import expect, sync_playwright

    from tests.browser.conftest import CHROMIUM_FLAGS, Traffic
    from tests.browser.test_ui_browser import ask, assistant_messages, chat_input, source

    traffic = Traffic(origin)
    executable = shutil.which("chromium")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        context = browser.new_context(locale="en-US", service_workers="block")
        context.set_default_timeout(60_000)
        page = traffic.watched_page(context)
        page.goto(ui_url)
        page.get_by_label("Username").fill(ACCOUNT[0])
        page.get_by_label("Password", exact=True).fill(ACCOUNT[1])
        page.get_by_role("button", name="Sign in").click()
        expect(chat_input(page)).to_be_visible(timeout=120_000)
        ask(page, HARBOUR_QUESTION)
        answer = assistant_messages(page).last.inner_text()
        sources = source(page, "harbour-renovation-memo.png").count()
        browser.close()
    return {
        "answer": answer,
        "memo_sources": sources,
        "requests": len(traffic.requests),
        "websockets": len(traffic.websockets),
        "foreign": traffic.foreign(),
    }


def run(out: Path, share: Path) -> dict[str, Any]:
    data_dir = Path(os.environ["RAG_DATA_DIR"])
    os.environ["RAG_LLM__PORT"] = str(free_port())
    os.environ["RAG_UI__PORT"] = str(free_port())
    os.environ["RAG_API__PORT"] = str(free_port())
    results: dict[str, Any] = {
        "llm_port": int(os.environ["RAG_LLM__PORT"]),
        "ui_port": int(os.environ["RAG_UI__PORT"]),
        "api_port": int(os.environ["RAG_API__PORT"]),
        "driver_pid": os.getpid(),
        "interfaces": subprocess.run(
            ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
        ).stdout,
    }
    (out / "results.json").write_text(json.dumps(results))
    try:
        results["doctor_before"] = rag("doctor")
        results["ingest"] = rag("ingest", str(share))
        results["search"] = rag("search", HARBOUR_SEARCH, "--k", "1")
        results["up"] = rag("up")
        results["service_switches"] = service_switches(data_dir)
        results["doctor_up"] = rag("doctor")
        results["user"] = rag("users", "add", ACCOUNT[0], stdin=ACCOUNT[1] + "\n")
        results["ask"] = rag("ask", HARBOUR_QUESTION)
        token = rag("tokens", "create", ACCOUNT[0])
        results["token"] = {"exit": token["exit"], "user": token["json"].get("user")}
        results["api_pid"] = service_pid(data_dir, "api")
        results["api"] = call_api(
            results["up"]["json"]["api_url"], token["json"]["token"], results["api_pid"]
        )
        ui_url = results["up"]["json"]["ui_url"]
        results["browser"] = browse(ui_url, f"127.0.0.1:{results['ui_port']}")
    except BaseException:  # pytest.fail from the browser helpers is a BaseException
        results["error"] = traceback.format_exc()[-4000:]
    finally:
        results["down"] = rag("down")
        (out / "results.json").write_text(json.dumps(results))
    return results


def main() -> int:
    out, share = Path(sys.argv[1]), Path(sys.argv[2])
    results = run(out, share)
    return 1 if "error" in results else 0


if __name__ == "__main__":
    sys.exit(main())
