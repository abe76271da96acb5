"""The whole path an operator and a user take, run by `test_zero_egress` inside a network
namespace with only loopback, under strace.

    python -m tests.airgap.egress_driver OUT SHARE

Runs `rag doctor`, `rag ingest SHARE` (OCR included), `rag up` (LLM server and UI), `rag
doctor` again, `rag users add`, `rag ask`, then a headless Chromium that signs in and asks
one question, then `rag down`. Each step's result goes to OUT/results.json; the test reads
it and the strace log. Exit status 0 when every step ran.
"""

from __future__ import annotations

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
    for name in ("llm-server", "ui"):
        pid_file = data_dir / "run" / f"{name}.pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        missing[name] = missing_switches(pid) if pid is not None else None
    return missing


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
        "interfaces": subprocess.run(
            ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
        ).stdout,
    }
    (out / "results.json").write_text(json.dumps(results))
    try:
        results["doctor_before"] = rag("doctor")
        results["ingest"] = rag("ingest", str(share))
        results["up"] = rag("up")
        results["service_switches"] = service_switches(data_dir)
        results["doctor_up"] = rag("doctor")
        results["user"] = rag("users", "add", ACCOUNT[0], stdin=ACCOUNT[1] + "\n")
        results["ask"] = rag("ask", HARBOUR_QUESTION)
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
