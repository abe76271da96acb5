"""The running Compose stack on the appliance host: start it, wait for health, smoke-test it,
and snapshot Qdrant's collections before an upgrade.

Qdrant publishes no port (its network is internal). On Linux the host reaches a container's
address on a bridge network, internal ones included, so the installer talks to Qdrant at the
qdrant container's address, with the API key from secrets/qdrant_api_key.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

QDRANT_PORT = 6333
SMOKE_COLLECTION = "bundle-smoke-test"
SMOKE_MOUNT = "/bundle-sample"
SMOKE_QUESTION = "What is the approved budget of the Harbour Renovation Project?"


class StackError(Exception):
    """The stack did not start, become healthy or answer the smoke test."""


def compose(
    install_dir: Path, files: tuple[str, ...], *args: str, timeout: float = 3600
) -> subprocess.CompletedProcess[str]:
    """`docker compose` over the profile's files (relative to the install folder)."""
    command = ["docker", "compose", "--project-directory", str(install_dir)]
    for name in files:
        command += ["-f", str(install_dir / name)]
    command += args
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)


def compose_up(install_dir: Path, files: tuple[str, ...], recreate: bool) -> None:
    up = ["up", "-d", "--remove-orphans", *(["--force-recreate"] if recreate else [])]
    result = compose(install_dir, files, *up)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StackError(f"`docker compose up -d` failed: {last}")


def service_containers(client: Any, project: str, service: str) -> list[Any]:
    labels = [f"com.docker.compose.project={project}", f"com.docker.compose.service={service}"]
    return list(client.containers.list(all=True, filters={"label": labels}))


def service_state(client: Any, project: str, service: str) -> str:
    """healthy, starting, unhealthy; or the container's status when it has no health check
    (running, exited...); missing when there is no container."""
    containers = service_containers(client, project, service)
    if not containers:
        return "missing"
    container = containers[0]
    container.reload()
    state = container.attrs.get("State", {})
    health = (state.get("Health") or {}).get("Status")
    return str(health or state.get("Status", "unknown"))


def wait_healthy(
    client: Any,
    project: str,
    services: list[str],
    timeout: float,
    say: Callable[[str], None],
    poll_seconds: float = 10,
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = {service: service_state(client, project, service) for service in services}
        if all(state == "healthy" for state in states.values()):
            return states
        stopped = [s for s, state in states.items() if state in ("exited", "dead", "missing")]
        if stopped or time.monotonic() > deadline:
            raise StackError(
                "services not healthy: "
                + ", ".join(f"{s}={state}" for s, state in states.items())
                + ": see `docker compose logs SERVICE` in the install folder"
            )
        say("waiting for health: " + ", ".join(f"{s}={state}" for s, state in states.items()))
        time.sleep(poll_seconds)


def qdrant_url(client: Any, project: str) -> str | None:
    """http://<qdrant container address>:6333 when the qdrant service runs, else None."""
    for container in service_containers(client, project, "qdrant"):
        if container.status != "running":
            continue
        networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        for network in networks.values():
            if network.get("IPAddress"):
                return f"http://{network['IPAddress']}:{QDRANT_PORT}"
    return None


def qdrant_http(
    base_url: str, api_key: str, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    # trust_env=False: a proxy from the environment must never carry these calls.
    # verify: the system's CAs, as the bundle carries no CA list (the URL is plain HTTP).
    return httpx.Client(
        base_url=base_url,
        headers={"api-key": api_key},
        trust_env=False,
        timeout=600,
        verify=ssl.create_default_context(),
        transport=transport,
    )


def snapshot_collections(http: httpx.Client) -> list[dict[str, str]]:
    """POST /collections/{name}/snapshots for every collection; [{collection, snapshot}]."""
    response = http.get("/collections")
    response.raise_for_status()
    names = [c["name"] for c in response.json()["result"]["collections"]]
    taken = []
    for name in names:
        created = http.post(f"/collections/{name}/snapshots", params={"wait": "true"})
        created.raise_for_status()
        taken.append({"collection": name, "snapshot": created.json()["result"]["name"]})
    return taken


def delete_collection(http: httpx.Client, name: str) -> None:
    http.delete(f"/collections/{name}").raise_for_status()


def smoke_test(install_dir: Path, files: tuple[str, ...], sample_share: Path) -> dict[str, Any]:
    """Ingest the bundle's sample share into a throw-away index and ask about it, in one
    container (the embedded store's index lives in its data folder); the answer must cite
    a file of the sample share."""
    run = ["run", "--rm", "--no-deps", "-T", "-v", f"{sample_share}:{SMOKE_MOUNT}:ro"]
    run += ["-e", f"RAG_QDRANT__COLLECTION={SMOKE_COLLECTION}", "-e", "RAG_DATA_DIR=/tmp/smoke"]
    script = 'rag ingest "$1" --json && rag ask "$2" --json'
    result = compose(
        install_dir, files, *run, "ingest", "sh", "-c", script, "smoke", SMOKE_MOUNT, SMOKE_QUESTION
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StackError(f"smoke test: `rag ingest` or `rag ask` failed: {last}")
    printed = json_objects(result.stdout)
    if len(printed) != 2:
        raise StackError(f"smoke test: expected two JSON objects, got {len(printed)}")
    ingested, answer = printed
    if not ingested.get("chunks"):
        raise StackError(f"smoke test: ingesting the sample share gave no chunks: {ingested}")
    cited = [c.get("path", "") for c in answer.get("citations", [])]
    if answer.get("refused") or not any(path.startswith(SMOKE_MOUNT + "/") for path in cited):
        raise StackError(
            f"smoke test: the answer cites no sample document (refused={answer.get('refused')}, "
            f"citations={cited}): see `docker compose logs vllm`"
        )
    return {"chunks": ingested["chunks"], "citations": cited}


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects printed one after the other (each may span lines)."""
    decoder, position = json.JSONDecoder(), 0
    found: list[dict[str, Any]] = []
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return found
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError:
            return found
        if isinstance(value, dict):
            found.append(value)
