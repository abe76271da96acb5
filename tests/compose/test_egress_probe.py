"""The egress probe and the seal together, on the Docker engine of this host: a container on a
bridge of its own reaches the host before the seal and nothing after it; a probe that cannot
run counts as a failure."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest

from ops.packaging.airgap import seal
from tests.compose import egress_probe


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def lone_container(base_image: str) -> Iterator[tuple[str, str]]:
    """(Compose project label, bridge prefix) of one sleeping container on a bridge network
    of its own whose Linux bridge is PREFIX-t; all of it removed afterwards."""
    prefix = "p" + secrets.token_hex(3)
    project = f"probe{prefix}"
    network = f"{project}_net"
    created = docker(
        "network", "create", "--driver", "bridge",
        "--opt", f"com.docker.network.bridge.name={prefix}-t", network,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    started = docker(
        "run", "-d", "--name", f"{project}-sleeper-1", "--network", network,
        "--dns", "0.0.0.0", "--dns-opt", "timeout:1", "--dns-opt", "attempts:2",
        "--label", f"com.docker.compose.project={project}",
        "--label", "com.docker.compose.service=sleeper",
        base_image, "sleep", "600",
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        yield project, prefix
    finally:
        docker("rm", "-f", f"{project}-sleeper-1")
        docker("network", "rm", network)
        for family in seal.families():
            seal.remove(seal.Firewall(family), prefix)


def test_a_probe_that_could_not_run_is_not_a_pass() -> None:
    targets = [egress_probe.Target("public address", "tcp", "1.1.1.1", 443)]
    missing_tool = subprocess.CompletedProcess(["docker"], 90, "MISSING timeout\n", "")
    no_bash = subprocess.CompletedProcess(["docker"], 126, "", "exec: bash: not found")
    cut_short = subprocess.CompletedProcess(["docker"], 0, "DONE\n", "")
    for completed in (missing_tool, no_bash, cut_short):
        result = egress_probe.interpret("c", "s", targets, completed)
        assert result.error and not result.sealed, completed


def test_an_attempt_counts_as_blocked_only_for_a_refusal_or_a_timeout() -> None:
    targets = [
        egress_probe.Target("public address", "tcp", "1.1.1.1", 443),
        egress_probe.Target("gateway", "tcp", "172.18.0.1", 4000),
        egress_probe.Target("outside name", "dns", "deb.debian.org"),
    ]
    reached = subprocess.CompletedProcess(
        ["docker"], 0, "RESULT 0 1\nRESULT 1 0\nRESULT 2 2\nDONE\n", ""
    )
    result = egress_probe.interpret("c", "s", targets, reached)
    assert [attempt.blocked for attempt in result.attempts] == [True, False, True]
    assert result.error is None and not result.sealed
    crashed = subprocess.CompletedProcess(
        ["docker"], 0, "RESULT 0 127\nRESULT 1 1\nRESULT 2 2\nDONE\n", ""
    )
    assert not egress_probe.interpret("c", "s", targets, crashed).sealed


def test_a_project_without_running_containers_is_not_sealed(engine: None) -> None:
    report = egress_probe.probe_project("no-such-project-" + secrets.token_hex(4))
    assert report.containers == [] and not report.sealed


def test_the_seal_takes_a_container_from_reaching_the_host_to_reaching_nothing(
    lone_container: tuple[str, str],
) -> None:
    project, prefix = lone_container
    before = egress_probe.probe_project(project)
    assert len(before.containers) == 1 and before.containers[0].error is None
    reached = {a.label for a in before.containers[0].attempts if not a.blocked}
    assert any(label.startswith("gateway ") for label in reached), before.as_dict()
    assert not before.sealed

    firewall = seal.Firewall(seal.IPV4)
    assert seal.apply(firewall, prefix) == []
    after = egress_probe.probe_project(project)
    assert after.sealed, after.as_dict()
    labels = {attempt.label for attempt in after.containers[0].attempts}
    assert {"public address", "outside name"} <= labels
    assert any(label.startswith("host address ") for label in labels)

    seal.remove(firewall, prefix)
    again = egress_probe.probe_project(project)
    assert not again.sealed
