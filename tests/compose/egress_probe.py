"""Proof from inside each container of a Compose project that nothing gets out.

`probe_project(project)` runs one bash script in every running container of the project
(`docker exec`) that tries, all at once and each within a few seconds:
  - a TCP connection to a public address (1.1.1.1:443 unless told otherwise);
  - a TCP connection to the host on every gateway of every Docker network the container is
    on, on the host's main addresses and on every other address of the host's interfaces
    (other bridges' gateways included), always on a port this probe is listening on for the
    duration (so a refusal cannot pass for a block);
  - resolving an outside name (deb.debian.org unless told otherwise).
Every attempt must FAIL. It uses only what every image of the stack has: bash's /dev/tcp,
`timeout` and `getent`. A container where the script cannot run, or reports less than it was
asked, counts as not sealed: a probe that did not run proves nothing.

Asked for (`measure_host_baseline`, `--baseline`), the host's own view is recorded beside
it: whether the host itself reaches the public address and resolves the outside name. When
it does not, a blocked attempt from a container shows less, and `vacuous` says so.

    python -m tests.compose.egress_probe PROJECT [--public 1.1.1.1:443]
        [--name deb.debian.org] [--baseline]
prints one JSON document and exits 0 when every container is sealed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

DEFAULT_PUBLIC = ("1.1.1.1", 443)
DEFAULT_OUTSIDE_NAME = "deb.debian.org"
ATTEMPT_SECONDS = 4
# bash's /dev/tcp: 1 is refused or unreachable; `timeout` gives 124 when it had to stop it.
TCP_BLOCKED = {1, 124}
# getent: 2 is "not found"; 124 again a timeout.
DNS_BLOCKED = {2, 124}
SCRIPT_MISSING_TOOL = 90


@dataclass(frozen=True)
class Target:
    """One thing a container must not reach: `kind` is "tcp" (host, port) or "dns" (name)."""

    label: str
    kind: str
    host: str
    port: int = 0


@dataclass(frozen=True)
class Attempt:
    """What one target gave from inside one container. `exit_code` is the attempt's exit
    status; `blocked` is True only for an exit status that means "could not get there"."""

    label: str
    kind: str
    target: str
    exit_code: int
    blocked: bool


@dataclass
class ContainerResult:
    """The attempts of one container, or why the probe could not run there (`error`)."""

    container: str
    service: str
    attempts: list[Attempt] = field(default_factory=list)
    error: str | None = None

    @property
    def sealed(self) -> bool:
        return self.error is None and bool(self.attempts) and all(a.blocked for a in self.attempts)


@dataclass
class ProbeReport:
    """Every running container's result, and what the host itself reaches."""

    project: str
    containers: list[ContainerResult]
    host_baseline: dict[str, bool]

    @property
    def sealed(self) -> bool:
        return bool(self.containers) and all(result.sealed for result in self.containers)

    @property
    def vacuous(self) -> bool:
        """True when the baseline was measured and the host itself reaches neither the public
        address nor the name."""
        return bool(self.host_baseline) and not any(self.host_baseline.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "project": self.project,
            "sealed": self.sealed,
            "vacuous": self.vacuous,
            "host_baseline": self.host_baseline,
            "containers": [
                {**asdict(result), "sealed": result.sealed} for result in self.containers
            ],
        }


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def running_containers(project: str) -> list[tuple[str, str]]:
    """(container name, Compose service) of every running container of the project."""
    listed = _docker(
        "ps", "--filter", f"label=com.docker.compose.project={project}",
        "--format", '{{.Names}}\t{{.Label "com.docker.compose.service"}}',
    )  # fmt: skip
    if listed.returncode != 0:
        raise RuntimeError(f"docker ps failed: {listed.stderr.strip()}")
    rows = [line.split("\t") for line in listed.stdout.splitlines() if line.strip()]
    return sorted((row[0], row[1] if len(row) > 1 else "") for row in rows)


def network_gateways(container: str) -> list[str]:
    """The gateway address of every network the container is on, as Docker's IPAM has it."""
    inspected = _docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", container)
    if inspected.returncode != 0:
        raise RuntimeError(f"docker inspect {container} failed: {inspected.stderr.strip()}")
    networks = json.loads(inspected.stdout) or {}
    gateways = []
    for name in networks:
        configured = _docker(
            "network", "inspect", "--format", "{{json .IPAM.Config}}", name
        )  # fmt: skip
        if configured.returncode == 0:
            for entry in json.loads(configured.stdout) or []:
                if entry.get("Gateway"):
                    gateways.append(entry["Gateway"])
        gateway = networks[name].get("Gateway")
        if gateway:
            gateways.append(gateway)
    return sorted(set(gateways))


def host_interface_addresses() -> list[str]:
    """Every address of the host's interfaces but loopback and link-local ones: the gateway
    of each Docker bridge (the default one and other projects' too) and the host's own."""
    listed = subprocess.run(
        ["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=10, check=False
    )
    if listed.returncode != 0:
        return []
    found = []
    for interface in json.loads(listed.stdout or "[]"):
        for entry in interface.get("addr_info", []):
            address = ipaddress.ip_address(entry["local"])
            if not (address.is_loopback or address.is_link_local):
                found.append(str(address))
    return found


def host_main_addresses() -> list[str]:
    """The source addresses the host's routes to the outside use (IPv4 and, if any, IPv6), as
    `ip route get` gives them: nothing is sent."""
    found = []
    for family, destination in (("-4", DEFAULT_PUBLIC[0]), ("-6", "2606:4700::1111")):
        route = subprocess.run(
            ["ip", "-j", family, "route", "get", destination],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        if route.returncode != 0:
            continue
        for entry in json.loads(route.stdout or "[]"):
            address = entry.get("prefsrc")
            if address and not ipaddress.ip_address(address).is_link_local:
                found.append(address)
    return found


@contextlib.contextmanager
def host_listener() -> Iterator[int]:
    """A TCP port listening on every host address (IPv4 and IPv6) while the probe runs."""
    try:
        listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
    except OSError:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("0.0.0.0", 0))
    with listener:
        listener.listen(64)
        yield listener.getsockname()[1]


def reachable_from_host(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), ATTEMPT_SECONDS):
        return True
    return False


def resolves_on_host(name: str) -> bool:
    try:
        return bool(socket.getaddrinfo(name, None))
    except OSError:
        return False


def _bash_literal(text: str) -> str:
    """`text` as a single-quoted bash word (targets are addresses and names, but be safe)."""
    return "'" + text.replace("'", "'\\''") + "'"


def probe_script(targets: Sequence[Target]) -> str:
    """The bash script run in each container: one `RESULT index exit_code` line per target."""
    lines = [
        "set -u",
        f"for tool in timeout getent; do command -v $tool >/dev/null "
        f"|| {{ echo MISSING $tool; exit {SCRIPT_MISSING_TOOL}; }}; done",
    ]
    for index, target in enumerate(targets):
        if target.kind == "tcp":
            inner = f"exec 3<>/dev/tcp/{target.host}/{target.port}"
            attempt = f"timeout {ATTEMPT_SECONDS} bash -c {_bash_literal(inner)} 2>/dev/null"
        else:
            attempt = (
                f"timeout {ATTEMPT_SECONDS * 2} getent hosts {_bash_literal(target.host)} "
                ">/dev/null 2>&1"
            )
        lines.append(f"( {attempt}; echo RESULT {index} $? ) &")
    lines += ["wait", "echo DONE"]
    return "\n".join(lines)


def interpret(
    container: str,
    service: str,
    targets: Sequence[Target],
    completed: subprocess.CompletedProcess[str],
) -> ContainerResult:
    """The script's output as attempts; anything short of a full report is an error."""
    result = ContainerResult(container=container, service=service)
    lines = completed.stdout.splitlines()
    if completed.returncode != 0 or "DONE" not in lines:
        detail = (completed.stdout + completed.stderr).strip()[-300:]
        result.error = f"probe did not run to the end (exit {completed.returncode}): {detail}"
        return result
    codes: dict[int, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "RESULT":
            codes[int(parts[1])] = int(parts[2])
    missing = [target.label for index, target in enumerate(targets) if index not in codes]
    if missing:
        result.error = f"no result for {', '.join(missing)}"
        return result
    for index, target in enumerate(targets):
        code = codes[index]
        blocked_codes = TCP_BLOCKED if target.kind == "tcp" else DNS_BLOCKED
        shown = f"{target.host}:{target.port}" if target.kind == "tcp" else target.host
        result.attempts.append(
            Attempt(target.label, target.kind, shown, code, code in blocked_codes)
        )
    unexpected = [a for a in result.attempts if not a.blocked and a.exit_code != 0]
    if unexpected:
        result.error = "attempts ended in ways that prove nothing: " + ", ".join(
            f"{a.label} exit {a.exit_code}" for a in unexpected
        )
    return result


def targets_for(
    container: str,
    listening_port: int,
    public: tuple[str, int],
    outside_name: str,
    host_addresses: Sequence[str],
) -> list[Target]:
    targets = [Target("public address", "tcp", public[0], public[1])]
    labelled = [(f"gateway {gw}", gw) for gw in network_gateways(container)]
    labelled += [(f"host address {address}", address) for address in host_addresses]
    seen: set[str] = set()
    for label, address in labelled:
        if address not in seen:
            seen.add(address)
            targets.append(Target(label, "tcp", address, listening_port))
    targets.append(Target("outside name", "dns", outside_name))
    return targets


def probe_container(
    container: str,
    service: str,
    listening_port: int,
    public: tuple[str, int],
    outside_name: str,
    host_addresses: Sequence[str],
) -> ContainerResult:
    try:
        targets = targets_for(container, listening_port, public, outside_name, host_addresses)
        completed = _docker(
            "exec", container, "bash", "-c", probe_script(targets), timeout=ATTEMPT_SECONDS * 10
        )
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as error:
        return ContainerResult(container=container, service=service, error=str(error))
    return interpret(container, service, targets, completed)


def probe_project(
    project: str,
    public: tuple[str, int] = DEFAULT_PUBLIC,
    outside_name: str = DEFAULT_OUTSIDE_NAME,
    measure_host_baseline: bool = False,
) -> ProbeReport:
    """Probe every running container of the Compose project; see the module docstring. The
    host's own baseline is measured only when asked (it contacts the public address and
    looks the name up from the host); otherwise `host_baseline` is empty."""
    containers = running_containers(project)
    host_addresses = host_main_addresses() + host_interface_addresses()
    with host_listener() as port, ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(probe_container, name, service, port, public, outside_name, host_addresses)
            for name, service in containers
        ]
        results = [future.result() for future in futures]
    baseline = {}
    if measure_host_baseline:
        baseline = {
            f"reaches {public[0]}:{public[1]}": reachable_from_host(*public),
            f"resolves {outside_name}": resolves_on_host(outside_name),
        }
    return ProbeReport(project=project, containers=results, host_baseline=baseline)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.compose.egress_probe",
        description="Check from inside every running container of a Compose project that "
        "it reaches no public address, none of the host's addresses and no outside name.",
    )
    parser.add_argument("project", help="the Compose project name (docker compose -p NAME)")
    parser.add_argument("--public", type=_address, default=DEFAULT_PUBLIC, help="host:port")
    parser.add_argument("--name", default=DEFAULT_OUTSIDE_NAME, help="an outside name")
    parser.add_argument(
        "--baseline", action="store_true",
        help="also check that the host itself reaches the public address and resolves the name",
    )  # fmt: skip
    args = parser.parse_args(argv)
    report = probe_project(args.project, args.public, args.name, args.baseline)
    json.dump(report.as_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if report.sealed else 1


if __name__ == "__main__":
    sys.exit(main())
