"""The installed stack, tried as an operator and its users would, in the order they would:
health, the share indexed, a cited answer through the front door (browser and API), nothing
getting out of any container, a re-install, a tampered bundle, and a restart that keeps
the data. The tests share one installation and run in this file's order."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from settings import PROJECT_ROOT
from tests.browser.conftest import CHROMIUM_FLAGS, Traffic
from tests.compose.conftest import ARTIFACTS, Installation, Timings

QUESTION = "What is the approved budget of the Harbour Renovation Project?"
CITED_FILE = "harbour-renovation-memo.png"
SAMPLE_FILES = 6
USER, PASSWORD = "dana", "a long sample passphrase 42"
HEALTH_TIMEOUT_SECONDS = 1200


def wait_until_healthy(installation: Installation, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        listed = installation.compose("ps", "--all", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
        states = {row["Service"]: row.get("Health") or row["State"] for row in rows}
        if states and all(state == "healthy" for state in states.values()):
            return states
        if time.monotonic() > deadline:
            pytest.fail(f"not healthy within {timeout:.0f} s: {states}")
        time.sleep(5)


def test_the_installer_started_every_service_healthy_and_its_smoke_test_was_cited(
    installed: Installation,
) -> None:
    report = installed.report
    assert report["ok"] is True
    assert set(report["health"].values()) == {"healthy"}
    assert {"ingest", "ui", "api", "vllm", "proxy"} <= set(report["health"])
    assert any(CITED_FILE in path for path in report["smoke_test"]["citations"])
    assert wait_until_healthy(installed, 60).keys() == report["health"].keys()


def test_the_ingest_service_indexes_the_read_only_share(installed: Installation) -> None:
    deadline = time.monotonic() + 900
    status = installed.rag("status")
    while status["documents"] < SAMPLE_FILES and time.monotonic() < deadline:
        time.sleep(10)
        status = installed.rag("status")
    assert status["documents"] == SAMPLE_FILES, status
    assert status["failed"] == 0, status
    written = installed.compose("exec", "-T", "ingest", "touch", "/shares/written-by-ingest")
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr
    assert not (installed.root / "shares" / "written-by-ingest").exists()


@pytest.fixture(scope="module")
def account(installed: Installation) -> tuple[str, str]:
    added = installed.rag("users", "add", USER, stdin=PASSWORD + "\n")
    assert added["user"] == USER
    return USER, PASSWORD


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as driver:
        yield _launch(driver)


def _launch(driver: Playwright) -> Browser:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: apt-get install chromium")
    return driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)


def test_a_question_in_the_browser_through_the_front_door_gets_the_cited_answer(
    installed: Installation, account: tuple[str, str], chromium: Browser, timings: Timings
) -> None:
    origin = f"127.0.0.1:{installed.https_port}"
    traffic = Traffic(origin)
    # The front door's certificate is the self-signed one of a first start.
    context = chromium.new_context(ignore_https_errors=True, locale="en-US")
    context.set_default_timeout(60_000)
    page = traffic.watched_page(context)
    page.goto(installed.url)
    page.get_by_label("Username").fill(account[0])
    page.get_by_label("Password", exact=True).fill(account[1])
    page.get_by_role("button", name="Sign in").click()
    chat = page.locator('[data-testid="stChatInput"] textarea')
    expect(chat).to_be_visible()
    started = time.monotonic()
    chat.fill(QUESTION)
    chat.press("Enter")
    answer = page.locator('[data-testid="stChatMessage"]').last
    expect(answer.get_by_role("radio", name="Thumbs up")).to_be_visible(timeout=600_000)
    timings.record("browser: question to answer", time.monotonic() - started)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "answer.png"), full_page=True)
    expect(answer.locator('[data-testid="stExpander"]').filter(has_text=CITED_FILE)).to_have_count(
        1
    )
    assert traffic.websockets, "the chat's WebSocket did not pass the front door"
    assert all(
        url.startswith(("https://", "wss://")) for url in traffic.requests + traffic.websockets
    )
    traffic.assert_only_local()
    context.close()


def served_certificate(installation: Installation, folder: Path) -> Path:
    pem = ssl.get_server_certificate(("127.0.0.1", installation.https_port))
    path = folder / "front-door.pem"
    path.write_text(pem)
    return path


def pinned_context(certificate: Path) -> ssl.SSLContext:
    """Trusts only the front door's own certificate (self-signed, for another name)."""
    context = ssl.create_default_context(cafile=str(certificate))
    context.check_hostname = False
    return context


def test_the_api_through_the_front_door_answers_the_openai_sdk_with_citations(
    installed: Installation, account: tuple[str, str], tmp_path: Path
) -> None:
    token = installed.rag("tokens", "create", account[0])["token"]
    context = pinned_context(served_certificate(installed, tmp_path))
    http = openai.DefaultHttpxClient(verify=context, trust_env=False, timeout=600)
    client = openai.OpenAI(base_url=f"{installed.url}/v1", api_key=token, http_client=http)
    reply = client.chat.completions.create(
        model="rag", messages=[{"role": "user", "content": QUESTION}]
    )
    extra = reply.model_extra or {}
    assert extra["refused"] is False
    assert any(CITED_FILE in citation["path"] for citation in extra["citations"])
    stranger = openai.OpenAI(base_url=f"{installed.url}/v1", api_key="no-token", http_client=http)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()


def test_the_front_door_redirects_http_and_sends_security_headers(
    installed: Installation, tmp_path: Path
) -> None:
    plain = httpx.get(f"http://127.0.0.1:{installed.http_port}/", trust_env=False)
    assert plain.status_code in (301, 308)
    assert plain.headers["location"].startswith("https://")
    context = pinned_context(served_certificate(installed, tmp_path))
    with httpx.Client(verify=context, trust_env=False, timeout=60) as http:
        page = http.get(f"{installed.url}/")
    assert page.status_code == 200
    assert page.headers["strict-transport-security"].startswith("max-age=")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors" in page.headers["content-security-policy"]


def test_no_container_reaches_outside_the_stack(installed: Installation) -> None:
    """The probe runs as its own process: its baseline (the host itself reaches the public
    address and resolves the name, so a block inside means something) connects from the
    host, which this test process refuses to do."""
    assert installed.report["seal"]["applied"] is True
    project = installed.report["compose_project"]
    probe = [sys.executable, "-m", "tests.compose.egress_probe", project, "--baseline"]
    result = subprocess.run(probe, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    report = json.loads(result.stdout)
    (ARTIFACTS / "egress-probe.json").write_text(json.dumps(report, indent=2) + "\n")
    probed = {container["service"] for container in report["containers"]}
    assert probed >= {"ingest", "ui", "api", "vllm", "proxy", "metrics"}
    assert report["vacuous"] is False, f"the host itself reaches nothing: {report['host_baseline']}"
    escaped = [c["service"] for c in report["containers"] if not c["sealed"]]
    assert report["sealed"] is True and result.returncode == 0, f"not sealed: {escaped}"


def test_a_re_run_of_the_installer_upgrades_in_place_and_keeps_settings(
    installed: Installation, timings: Timings
) -> None:
    env_before = (installed.root / "appliance.env").read_bytes()
    secrets_before = {p.name: p.read_bytes() for p in (installed.root / "secrets").iterdir()}
    started = time.monotonic()
    command = ["bash", str(installed.bundle / "install.sh"), str(installed.bundle)]
    command += ["--install-dir", str(installed.root), "--json", "--no-smoke-test"]
    result = subprocess.run(command, capture_output=True, text=True, env=installed.env)
    timings.record("re-install (upgrade in place)", time.monotonic() - started)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["ok"] is True
    assert (installed.root / "appliance.env").read_bytes() == env_before
    assert {
        p.name: p.read_bytes() for p in (installed.root / "secrets").iterdir()
    } == secrets_before
    assert installed.rag("status")["documents"] == SAMPLE_FILES


def test_a_tampered_bundle_is_refused_before_anything_is_touched(
    installed: Installation, tmp_path: Path
) -> None:
    compose_file = installed.bundle / "compose" / "docker-compose.yml"
    original = compose_file.read_bytes()
    fresh_root = tmp_path / "never-created"
    try:
        compose_file.write_bytes(original.replace(b"read_only: true", b"read_only: false", 1))
        command = ["bash", str(installed.bundle / "install.sh"), str(installed.bundle)]
        command += ["--install-dir", str(fresh_root), "--json"]
        result = subprocess.run(command, capture_output=True, text=True, env=installed.env)
    finally:
        compose_file.write_bytes(original)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["stage"] == "verify"
    assert any("docker-compose.yml" in problem for problem in report["problems"])
    assert not fresh_root.exists()


def test_down_keeps_the_volumes_and_a_second_up_keeps_the_index_and_the_users(
    installed: Installation, account: tuple[str, str], timings: Timings
) -> None:
    before = installed.rag("status")["documents"]
    down = installed.compose("down")
    assert down.returncode == 0, down.stderr
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", "label=com.docker.compose.project"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert any(name.endswith("_data") for name in volumes), volumes
    started = time.monotonic()
    up = installed.compose("up", "-d")
    assert up.returncode == 0, up.stderr
    wait_until_healthy(installed, HEALTH_TIMEOUT_SECONDS)
    timings.record("second up to healthy", time.monotonic() - started)
    assert installed.rag("status")["documents"] == before
    assert account[0] in {user["user"] for user in installed.rag("users", "list")["users"]}
