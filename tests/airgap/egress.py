"""Reading an strace log of connect/sendto/sendmsg/sendmmsg for traffic that would leave.

The log comes from `strace -f -qq -Y -yy -e signal=none -e trace=connect,sendto,sendmsg,sendmmsg`
(`-Y` names each process, `-yy` says whether a socket is TCP or UDP). Every destination
address in it is judged:

- IPv4 in 127.0.0.0/8, IPv6 ::1 and ::ffff:127.x.y.z are loopback: fine, and counted, so a
  test can check that the tracing saw the traffic it expects.
- Any other IPv4/IPv6 destination is an egress attempt, whether it failed or not; so is
  anything to port 53 (DNS, even on loopback: a local stub resolver forwards outside), any
  address of a nameserver in /etc/resolv.conf, and any address family other than
  AF_UNIX, AF_NETLINK (the kernel) and AF_UNSPEC (which disconnects a socket).
- One exception, a known route probe (`ROUTE_PROBES`): `connect()` on a UDP socket sends
  no packet; it asks the kernel which route and source address a datagram would take.
  Chromium does this for every host resolution (its IPv6 reachability check, to
  2001:4860:4860::8888:443). (vLLM does it to learn its own address unless VLLM_HOST_IP
  names it, which the local server's environment does.) Such a probe
  is reported, not failed; any other UDP connect fails (telemetry can connect, then
  send), and so does any send on a socket connected to a non-loopback peer.
- Name-service daemons: glibc asks nscd (and the nss-resolve module asks
  systemd-resolved) before it reads /etc/hosts, for every name, `localhost` included. A
  connect to their socket that finds no daemon is harmless and only reported; one that
  reaches a daemon fails, because the daemon may forward the lookup outside.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

NAME_SERVICE_SOCKETS = frozenset(
    {
        "/var/run/nscd/socket",
        "/run/nscd/socket",
        "/run/systemd/resolve/io.systemd.Resolve",
        "/run/systemd/resolve/io.systemd.Resolve.Monitor",
    }
)
HARMLESS_FAMILIES = frozenset({"AF_UNIX", "AF_NETLINK", "AF_UNSPEC"})
# UDP connects that only ask the kernel for a route; no packet is sent (see the docstring).
ROUTE_PROBES = {
    ("2001:4860:4860::8888", 443): "Chromium's IPv6 reachability check",
}
STRACE_OPTIONS = [
    "-f", "-qq", "-Y", "-yy", "--seccomp-bpf", "-e", "signal=none",
    "-e", "trace=connect,sendto,sendmsg,sendmmsg",
]  # fmt: skip

_LINE = re.compile(r"^(?P<pid>\d+)(?:<(?P<comm>[^>]*)>)? (?P<rest>.*)$")
_CALL = re.compile(
    r"^(?P<syscall>connect|sendto|sendmsg|sendmmsg)\((?P<fd>\d+)(?:<(?P<fdinfo>(?:->|[^>])*)>)?"
    r"(?P<args>.*)$"
)
_RESUMED = re.compile(r"^<\.\.\. (?P<syscall>\w+) resumed>.*?\)\s*=\s*(?P<result>.*)$")
_RESULT = re.compile(r"\)\s+=\s+(?P<result>-?\d[^=]*)$")
# Quoted strings are data (a sent buffer), except a socket path and an IP address.
_QUOTED = re.compile(r'(?P<keep>sun_path=@?|inet_addr\(|inet_pton\(AF_INET6, )?"(?:[^"\\]|\\.)*"')
_SOCKADDR = re.compile(r"\{sa_family=(?P<family>AF_\w+)(?P<body>[^{}]*)\}")
_IPV4 = re.compile(r'sin_port=htons\((?P<port>\d+)\), sin_addr=inet_addr\("(?P<ip>[^"]+)"\)')
_IPV6 = re.compile(r'sin6_port=htons\((?P<port>\d+)\).*?inet_pton\(AF_INET6, "(?P<ip>[^"]+)"')
_IP_PATTERNS = {"AF_INET": _IPV4, "AF_INET6": _IPV6}
_UNIX = re.compile(r'sun_path=(?P<path>@?"(?:[^"\\]|\\.)*")')
_FD_PEER = re.compile(r"->\[?(?P<ip>[0-9a-fA-F.:]+?)\]?:(?P<port>\d+)\]?$")


@dataclass(frozen=True)
class Attempt:
    """One destination in one traced call."""

    pid: int
    process: str
    syscall: str
    family: str
    address: str  # an IP address or a socket path
    port: int | None
    protocol: str  # from the socket's description: TCP, UDP, UDPv6, UNIX-STREAM, ...
    result: str  # "0", "-1 ENETUNREACH (Network is unreachable)", "" when never seen
    line: str

    @property
    def succeeded(self) -> bool:
        return self.result.split(" ", 1)[0] not in ("", "-1")

    def describe(self) -> str:
        where = f"{self.address}:{self.port}" if self.port is not None else self.address
        outcome = self.result or "unfinished"
        return (
            f"pid {self.pid} ({self.process}) {self.syscall} {self.family} {where} "
            f"[{self.protocol or '?'}] = {outcome}"
        )


@dataclass
class Verdict:
    offending: list[tuple[Attempt, str]] = field(default_factory=list)
    route_probes: list[Attempt] = field(default_factory=list)
    name_service_probes: list[Attempt] = field(default_factory=list)
    loopback: list[Attempt] = field(default_factory=list)

    def loopback_ports(self) -> set[int]:
        """Loopback ports something connected to."""
        return {a.port for a in self.loopback if a.port is not None and a.syscall == "connect"}

    def report(self) -> str:
        lines = [f"{reason}: {attempt.describe()}\n    {attempt.line}" for attempt, reason in
                 self.offending]  # fmt: skip
        return "\n".join(lines)


def nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> set[str]:
    try:
        text = resolv_conf.read_text()
    except OSError:
        return set()
    found = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            found.add(parts[1].split("%")[0])
    return found


def parse(lines: Iterable[str]) -> Iterator[Attempt]:
    """Every destination address in the log, with the call's result (unfinished calls are
    paired with their resumption, per thread)."""
    pending: dict[int, list[Attempt]] = {}
    for raw in lines:
        line = raw.rstrip("\n")
        head = _LINE.match(line)
        if head is None:
            continue
        pid, comm, rest = int(head["pid"]), head["comm"] or "?", head["rest"]
        resumed = _RESUMED.match(rest)
        if resumed is not None:
            for attempt in pending.pop(pid, []):
                yield _with_result(attempt, resumed["result"])
            continue
        call = _CALL.match(rest)
        if call is None:
            continue
        args = _QUOTED.sub(lambda m: m.group(0) if m["keep"] else '""', call["args"])
        fdinfo = call["fdinfo"] or ""
        protocol = fdinfo.split(":", 1)[0]
        attempts = list(_destinations(pid, comm, call["syscall"], args, fdinfo, protocol, line))
        result = _RESULT.search(args)
        if "<unfinished ...>" in args:
            pending.setdefault(pid, []).extend(attempts)
            continue
        for attempt in attempts:
            yield _with_result(attempt, result["result"] if result else "")
    for attempts in pending.values():
        yield from attempts


def _with_result(attempt: Attempt, result: str) -> Attempt:
    return Attempt(**{**attempt.__dict__, "result": result.strip()})


def _destinations(
    pid: int, comm: str, syscall: str, args: str, fdinfo: str, protocol: str, line: str
) -> Iterator[Attempt]:
    found = False
    for sockaddr in _SOCKADDR.finditer(args):
        found = True
        family, body = sockaddr["family"], sockaddr["body"]
        address, port = "", None
        ip = _IP_PATTERNS.get(family)
        if ip is not None and (m := ip.search(body)):
            address, port = m["ip"], int(m["port"])
        elif family == "AF_UNIX" and (m := _UNIX.search(body)):
            address = m["path"].replace('"', "")
        yield Attempt(pid, comm, syscall, family, address, port, protocol, "", line)
    if not found and syscall != "connect" and (peer := _FD_PEER.search(fdinfo)):
        # A send on a connected socket: its destination is the socket's peer.
        family = "AF_INET6" if ":" in peer["ip"] else "AF_INET"
        port = int(peer["port"])
        yield Attempt(pid, comm, syscall, family, peer["ip"], port, protocol, "", line)


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def judge(attempts: Iterable[Attempt], resolvers: set[str] | None = None) -> Verdict:
    resolvers = nameservers() if resolvers is None else resolvers
    verdict = Verdict()
    for attempt in attempts:
        family = attempt.family
        if family == "AF_UNIX":
            if attempt.address in NAME_SERVICE_SOCKETS:
                if attempt.succeeded:
                    verdict.offending.append((attempt, "name lookup reached a daemon"))
                else:
                    verdict.name_service_probes.append(attempt)
            continue
        if family in HARMLESS_FAMILIES:
            continue
        if family not in ("AF_INET", "AF_INET6"):
            verdict.offending.append((attempt, f"unexpected address family {family}"))
        elif not attempt.address:
            verdict.offending.append((attempt, "address not understood"))
        elif attempt.port == 53 or attempt.address in resolvers:
            verdict.offending.append((attempt, "DNS"))
        elif is_loopback(attempt.address):
            verdict.loopback.append(attempt)
        elif _is_route_probe(attempt):
            verdict.route_probes.append(attempt)
        else:
            verdict.offending.append((attempt, "non-loopback destination"))
    return verdict


def _is_route_probe(attempt: Attempt) -> bool:
    known = (attempt.address, attempt.port) in ROUTE_PROBES
    return known and attempt.syscall == "connect" and attempt.protocol.startswith("UDP")


def judge_log(path: Path, resolvers: set[str] | None = None) -> Verdict:
    with path.open(errors="replace") as log:
        return judge(parse(log), resolvers)
