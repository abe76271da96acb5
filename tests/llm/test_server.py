"""How `rag up` starts the local LLM server: its API key in its environment, never in its
arguments, which any local account reads in the process list."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import httpx
import pytest

from llm.build import build_chat_model
from llm.server import API_KEY_VARIABLE, server_command, server_environment
from ops.health import llm_status
from ops.stack import llm_process
from tests.conftest import RAG, free_port, make_settings
from tests.llm.test_client import HELLO


def test_the_llm_servers_api_key_is_passed_in_its_environment_not_its_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = secrets.token_urlsafe(24)
    keyed = make_settings(tmp_path / "data", llm={"api_key": key})
    assert not any(key in argument for argument in server_command(keyed))
    assert "--api-key" not in server_command(keyed)
    assert server_environment(keyed)[API_KEY_VARIABLE] == key
    # Without a key, one the caller's environment holds does not reach the server.
    monkeypatch.setenv(API_KEY_VARIABLE, "inherited")
    assert API_KEY_VARIABLE not in server_environment(make_settings(tmp_path / "data"))
    assert server_environment(keyed)[API_KEY_VARIABLE] == key


def process_group(leader: int) -> list[int]:
    """The processes of the group the server leads (vLLM forks an engine process)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) == leader:
                members.append(int(entry.name))
    return members


@pytest.mark.integration
def test_rag_up_keeps_the_llm_servers_api_key_out_of_the_process_list_and_the_server_requires_it(
    tmp_path: Path,
) -> None:
    key = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {"RAG_DATA_DIR": str(tmp_path / "data"), "RAG_LLM__PORT": str(free_port()),
            "RAG_API__PORT": str(free_port()), "RAG_LLM__API_KEY": key,
            "RAG_LLM__STARTUP_TIMEOUT_SECONDS": "900"}  # fmt: skip
    settings = make_settings(
        tmp_path / "data", llm={"api_key": key, "port": int(env["RAG_LLM__PORT"])}
    )
    try:
        up = subprocess.run([str(RAG), "up", "--no-ui", "--json"], env=env, capture_output=True,
                            text=True, timeout=1200)  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["llm_url"] == settings.llm.resolved_base_url()
        server = llm_process(settings).pid()
        assert server is not None
        group = process_group(server)
        assert server in group and len(group) >= 2, "the server and its engine process"
        for pid in group:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert key not in arguments, f"the key is in the arguments of process {pid}"
        assert f"{API_KEY_VARIABLE}={key}".encode() in Path(f"/proc/{server}/environ").read_bytes()

        models = settings.llm.resolved_base_url().rstrip("/") + "/models"
        with httpx.Client(trust_env=False, timeout=30) as client:
            assert client.get(models).status_code == 401
            wrong = {"Authorization": f"Bearer {key}-not"}
            assert client.get(models, headers=wrong).status_code == 401
            right = {"Authorization": f"Bearer {key}"}
            assert client.get(models, headers=right).status_code == 200
        assert llm_status(settings)["reachable"] is True
        assert "Paris" in build_chat_model(settings).complete(HELLO)
    finally:
        subprocess.run([str(RAG), "down", "--json"], env=env, capture_output=True, timeout=120)
    assert llm_process(settings).pid() is None
