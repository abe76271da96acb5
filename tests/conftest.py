"""Shared fixtures: network blocked, real models, one real LLM server per session."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from settings import PROJECT_ROOT, Settings, enforce_offline

enforce_offline()

SAMPLE_SHARE = PROJECT_ROOT / "ops" / "sample-share"
RAG = Path(sys.executable).parent / "rag"


class NetworkBlocked(RuntimeError):
    pass


# The network namespace the directory tests start their Active Directory domain in
# (tests/directory/samba_domain.py): a veth pair of this machine's, routed nowhere else.
TEST_NAMESPACE_NETWORK = ipaddress.ip_network("10.254.54.0/26")


def _is_loopback(address: Any) -> bool:
    """Whether `address` stays on this machine: loopback, or the tests' own namespace."""
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("localhost", ""):
        return True
    try:
        found = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name other than localhost would need DNS: not allowed
    return found.is_loopback or found in TEST_NAMESPACE_NETWORK


@pytest.fixture(autouse=True)
def block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests may talk to servers on this machine only; anything else raises."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise NetworkBlocked(f"network access blocked in tests: {address!r}")

    def connect(sock: socket.socket, address: Any) -> None:
        guard(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        guard(sock, address)
        return real_connect_ex(sock, address)

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            raise NetworkBlocked(f"name lookup blocked in tests: {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(autouse=True)
def keep_umask() -> Iterator[None]:
    """An entry point run in this process (the Streamlit script under AppTest, a benchmark's
    main) makes later files private with its umask: give the next test the umask it had."""
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=data_dir, **overrides)


@pytest.fixture(scope="session")
def sample_share(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the sample share (tests may change files in their own copies)."""
    target = tmp_path_factory.mktemp("share") / "sample-share"
    shutil.copytree(SAMPLE_SHARE, target)
    return target


@pytest.fixture(scope="session")
def embedder() -> Any:
    from retrieval.embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(Settings().embedder_dir)


@pytest.fixture(scope="session")
def ingested(
    tmp_path_factory: pytest.TempPathFactory, sample_share: Path, embedder: Any
) -> Settings:
    """Settings whose data dir holds the sample share, ingested once for the session."""
    from ingest.ledger import Ledger
    from ingest.pipeline import Ingestor
    from retrieval.build import build_store

    settings = make_settings(tmp_path_factory.mktemp("data"))
    ledger = Ledger(settings.ledger_path)
    report = Ingestor(settings, embedder, build_store(settings), ledger).run([str(sample_share)])
    ledger.close()
    assert not report.failed, report.failed
    return settings


@pytest.fixture(scope="session")
def llm_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A real vLLM server (CPU build, the packaged model), started once for the session."""
    from ops.stack import llm_process, start_llm

    settings = make_settings(
        tmp_path_factory.mktemp("llm"),
        llm={"port": free_port(), "startup_timeout_seconds": 900},
    )
    start_llm(settings)
    yield settings
    llm_process(settings).stop()


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the `rag` command on a private data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright: one for the whole session, shared by
    the browser, single sign-on and directory tests (Playwright's sync API runs once per
    process)."""
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_FLAGS

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: apt-get install chromium")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def serving_api(env: dict[str, str]) -> Iterator[str]:
    """`rag serve` run with `env` (which names RAG_API__PORT), until the block ends: its URL,
    once it answers /healthz."""
    import httpx

    server = subprocess.Popen(
        [str(RAG), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{env['RAG_API__PORT']}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "healthz", timeout=2, trust_env=False).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline, "rag serve did not come up"
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
