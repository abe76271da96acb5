"""The local stack that `rag up` starts and `rag down` stops: the LLM server, the API and the
UI."""

from __future__ import annotations

import os
import sys

from llm.server import health_url, server_command, server_environment
from ops.processes import ManagedProcess, ServiceError, is_healthy, wait_until_healthy
from settings import OFFLINE_ENVIRONMENT, PROJECT_ROOT, Settings


def llm_process(settings: Settings) -> ManagedProcess:
    return ManagedProcess("llm-server", settings.run_dir)


def ui_process(settings: Settings) -> ManagedProcess:
    return ManagedProcess("ui", settings.run_dir)


def api_process(settings: Settings) -> ManagedProcess:
    return ManagedProcess("api", settings.run_dir)


def api_url(settings: Settings) -> str:
    return f"http://{settings.api.host}:{settings.api.port}/"


def ui_url(settings: Settings) -> str:
    return f"http://{settings.ui.host}:{settings.ui.port}/"


def start_llm(settings: Settings) -> str:
    """Start the local LLM server unless it already runs; returns its base URL."""
    base_url = settings.llm.resolved_base_url()
    if settings.llm.base_url:
        return base_url  # an external server (the appliance's vllm service): not ours to start
    process = llm_process(settings)
    if process.pid() is not None and is_healthy(health_url(settings)):
        return base_url
    if is_healthy(health_url(settings)):
        raise ServiceError(
            f"port {settings.llm.port} already serves something else; set RAG_LLM__PORT"
        )
    if not settings.llm.server_python.exists():
        raise ServiceError(
            f"LLM server environment missing ({settings.llm.server_python}); run `make setup`"
        )
    if not (settings.llm_model_dir / "config.json").exists():
        raise ServiceError(f"LLM model folder missing ({settings.llm_model_dir}); run `make setup`")
    process.stop()
    process.start(server_command(settings), server_environment(settings), PROJECT_ROOT)
    wait_until_healthy(
        health_url(settings),
        settings.llm.startup_timeout_seconds,
        lambda: process.pid() is not None,
        "the LLM server",
        process.log_tail,
    )
    return base_url


def _start_app_service(
    process: ManagedProcess,
    command: list[str],
    settings: Settings,
    health: str,
    timeout: float,
    name: str,
) -> None:
    """Start one of the appliance's own services unless it already runs and is healthy."""
    if process.pid() is not None and is_healthy(health):
        return
    process.stop()
    env = dict(os.environ)
    env.update(OFFLINE_ENVIRONMENT)
    env["RAG_DATA_DIR"] = str(settings.data_dir.resolve())
    process.start(command, env, PROJECT_ROOT)
    wait_until_healthy(health, timeout, lambda: process.pid() is not None, name, process.log_tail)


def start_api(settings: Settings) -> str:
    """Start `rag serve` unless it already runs; returns its URL."""
    url = api_url(settings)
    command = [
        sys.executable, "-m", "ops.cli", "serve",
        "--host", settings.api.host, "--port", str(settings.api.port),
    ]  # fmt: skip
    _start_app_service(api_process(settings), command, settings, f"{url}healthz",
                       settings.api.startup_timeout_seconds, "the API")  # fmt: skip
    return url


def start_ui(settings: Settings) -> str:
    url = ui_url(settings)
    command = [
        sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "ui" / "app.py"),
        "--server.address", settings.ui.host,
        "--server.port", str(settings.ui.port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--client.showErrorDetails", "none",  # no traceback in the browser: ui.incident
        "--global.developmentMode", "false",
    ]  # fmt: skip
    _start_app_service(ui_process(settings), command, settings, f"{url}_stcore/health",
                       settings.ui.startup_timeout_seconds, "the UI")  # fmt: skip
    return url


def up(settings: Settings, with_ui: bool = True) -> dict[str, str | None]:
    llm_url = start_llm(settings)
    return {
        "llm_url": llm_url,
        "api_url": start_api(settings),
        "ui_url": start_ui(settings) if with_ui else None,
    }


def down(settings: Settings) -> dict[str, object]:
    ui_process(settings).stop()
    api_process(settings).stop()
    llm_process(settings).stop()
    return {}
