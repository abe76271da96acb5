"""Seal the appliance's containers in: host firewall rules under which no container of the
stack opens a connection to a public address or to the host itself, while the front door
still answers on its published ports.

Docker alone leaves two ways out: a container on a normal bridge network reaches whatever
the host reaches, and one on an `internal: true` network still reaches the host's own
sockets through its bridge's gateway address (and the host's other addresses). Every
network of docker-compose.yml has a fixed Linux bridge name, `PREFIX-edge`, `PREFIX-front`,
`PREFIX-back` (Compose's BRIDGE_PREFIX, `rag` by default); the rules match `PREFIX-*`, so
they hold for networks created after them too, and can go in before Docker starts.

For IPv4 and, where ip6tables is present, IPv6:
  - PREFIX-SEAL-FWD, jumped to first from DOCKER-USER for packets coming in from a
    PREFIX-* bridge: replies of connections made to a container pass, traffic between two
    containers of the same bridge passes (Docker's own rules decide after), anything else
    is rejected. This stops public addresses, other networks and the host's other machines.
  - PREFIX-SEAL-IN, jumped to first from INPUT for the same packets: replies pass, anything
    else for the host itself (a gateway address, the host's main address, any port) is
    rejected.
Names: the services' `dns: 0.0.0.0` (docker-compose.yml) stops Docker's resolver forwarding
outside names; these rules would stop the forwarded query from leaving anyway.

The organisation's own servers that the appliance must reach (its directory for sign-in, its
single sign-on, its file servers for `smb://` shares) are named with `--allow ADDRESS:PORT`
(an address or a network, and a TCP port), repeated as needed: PREFIX-SEAL-FWD lets new
connections to exactly those through, before it rejects the rest. Such connections leave only
from containers on the stack's `corporate` network (compose.corporate.yml); every other
network of the stack is internal, with no route out whatever the rules say.

The rules live in the kernel only: they are gone after a reboot (see the README for the
unit that applies them at boot, before Docker). `apply` is idempotent (run it again at any
time), `remove` takes out exactly what `apply` put in, `check` says what is missing:

    python3 -m ops.packaging.airgap.seal apply|remove|check [--bridge-prefix rag]
        [--allow 10.1.2.3:636 ...] [--dry-run]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_PREFIX = "rag"
# A Linux interface name has at most 15 characters; the longest suffix is "-front".
PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,8}")
DOCKER_USER = "DOCKER-USER"
INPUT = "INPUT"
NET_CLASS = Path("/sys/class/net")


class SealError(Exception):
    """A firewall command failed; the message names the command and its error."""


@dataclass(frozen=True)
class Family:
    """One address family's firewall command and its rejection for everything else."""

    name: str
    command: str
    reject_with: str


IPV4 = Family("ipv4", "iptables", "icmp-admin-prohibited")
IPV6 = Family("ipv6", "ip6tables", "icmp6-adm-prohibited")


@dataclass(frozen=True)
class Destination:
    """A server of the organisation's that containers may open TCP connections to."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int

    @classmethod
    def parse(cls, text: str) -> Destination:
        """`10.1.2.3:636`, `10.1.2.0/24:445` or `[fd00::5]:636`; SealError when it is not."""
        address, _, port = text.rpartition(":")
        try:
            network = ipaddress.ip_network(address.strip("[]"), strict=False)
            number = int(port)
        except ValueError:
            network, number = None, 0
        if network is None or not 0 < number < 65536:
            raise SealError(
                f"--allow {text!r}: give an address or network and a TCP port, e.g. "
                "10.1.2.3:636, 10.1.2.0/24:445 or [fd00::5]:636"
            )
        return cls(network, number)


@dataclass(frozen=True)
class Plan:
    """What `apply` puts in place for one bridge prefix and one family: two chains of our own,
    filled with `forward_rules` and `input_rules`, and the two jumps to them."""

    family: Family
    prefix: str
    allowed: tuple[Destination, ...] = ()

    @property
    def forward_chain(self) -> str:
        return f"{self.prefix.upper()}-SEAL-FWD"

    @property
    def input_chain(self) -> str:
        return f"{self.prefix.upper()}-SEAL-IN"

    @property
    def bridges(self) -> str:
        """The iptables interface pattern of every bridge of the stack."""
        return f"{self.prefix}-+"

    def forward_rules(self) -> list[list[str]]:
        version = 4 if self.family == IPV4 else 6
        allowed = [
            ["-d", str(d.network), "-p", "tcp", "-m", "tcp", "--dport", str(d.port), "-j", "RETURN"]
            for d in self.allowed
            if d.network.version == version
        ]
        return [
            ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
            ["-m", "physdev", "--physdev-is-bridged", "-j", "RETURN"],
            *allowed,
            ["-j", "REJECT", "--reject-with", self.family.reject_with],
        ]

    def input_rules(self) -> list[list[str]]:
        return [
            ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"],
            ["-j", "REJECT", "--reject-with", self.family.reject_with],
        ]

    def jumps(self) -> list[tuple[str, list[str]]]:
        """(built-in or Docker chain, rule) inserted at the top of that chain."""
        return [
            (DOCKER_USER, ["-i", self.bridges, "-j", self.forward_chain]),
            (INPUT, ["-i", self.bridges, "-j", self.input_chain]),
        ]

    def chains(self) -> dict[str, list[list[str]]]:
        return {self.forward_chain: self.forward_rules(), self.input_chain: self.input_rules()}


Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


def run_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


class Firewall:
    """One family's iptables, through `runner` (which `--dry-run` replaces by a printer)."""

    def __init__(self, family: Family, runner: Runner = run_command) -> None:
        self.family = family
        self.runner = runner

    def _run(self, *args: str, may_fail: bool = False) -> subprocess.CompletedProcess[str]:
        argv = [self.family.command, "-w", "10", "-t", "filter", *args]
        result = self.runner(argv)
        if result.returncode != 0 and not may_fail:
            raise SealError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def has_chain(self, chain: str) -> bool:
        return self._run("-S", chain, may_fail=True).returncode == 0

    def has_rule(self, chain: str, rule: Sequence[str]) -> bool:
        return self._run("-C", chain, *rule, may_fail=True).returncode == 0

    def rules_of(self, chain: str) -> list[str]:
        """The chain's rules as `iptables -S` prints them, without the `-N`/`-P` line."""
        listed = self._run("-S", chain, may_fail=True)
        if listed.returncode != 0:
            return []
        return [line for line in listed.stdout.splitlines() if line.startswith("-A ")]

    def ensure_chain(self, chain: str) -> None:
        if not self.has_chain(chain):
            self._run("-N", chain)

    def fill_chain(self, chain: str, rules: list[list[str]]) -> None:
        self.ensure_chain(chain)
        self._run("-F", chain)
        for rule in rules:
            self._run("-A", chain, *rule)

    def ensure_first(self, chain: str, rule: list[str]) -> None:
        """The rule once, at the top of the chain (moved there if it sits lower)."""
        while self.has_rule(chain, rule):
            self._run("-D", chain, *rule)
        self._run("-I", chain, "1", *rule)

    def delete_everywhere(self, chain: str, rule: list[str]) -> int:
        removed = 0
        while self.has_chain(chain) and self.has_rule(chain, rule):
            self._run("-D", chain, *rule)
            removed += 1
        return removed

    def drop_chain(self, chain: str) -> bool:
        if not self.has_chain(chain):
            return False
        self._run("-F", chain)
        self._run("-X", chain)
        return True


def validate_prefix(prefix: str) -> str:
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise SealError(
            f"bridge prefix {prefix!r}: 1 to 9 lower-case letters and digits, starting with a "
            "letter (the Compose variable BRIDGE_PREFIX)"
        )
    return prefix


def apply(firewall: Firewall, prefix: str, allowed: Sequence[Destination] = ()) -> list[str]:
    """Put the plan in place (again): our chains refilled, the jumps first in their chains.
    DOCKER-USER is created when Docker has not started yet; Docker keeps what it holds."""
    plan = Plan(firewall.family, validate_prefix(prefix), tuple(allowed))
    for chain, rules in plan.chains().items():
        if not _chain_as_planned(firewall, chain, rules):
            firewall.fill_chain(chain, rules)
    firewall.ensure_chain(DOCKER_USER)
    for chain, rule in plan.jumps():
        firewall.ensure_first(chain, rule)
    return check(firewall, prefix, allowed)


def remove(firewall: Firewall, prefix: str) -> list[str]:
    """Take out the jumps and our chains; what else the tables hold stays as it is."""
    plan = Plan(firewall.family, validate_prefix(prefix))
    removed = []
    for chain, rule in plan.jumps():
        if firewall.delete_everywhere(chain, rule):
            removed.append(f"jump from {chain}")
    for chain in plan.chains():
        if firewall.drop_chain(chain):
            removed.append(f"chain {chain}")
    return removed


def check(firewall: Firewall, prefix: str, allowed: Sequence[Destination] = ()) -> list[str]:
    """What is missing or different from the plan; empty when the seal is in place."""
    plan = Plan(firewall.family, validate_prefix(prefix), tuple(allowed))
    problems = []
    for chain, rules in plan.chains().items():
        if not _chain_as_planned(firewall, chain, rules):
            problems.append(f"{firewall.family.name}: chain {chain} is missing or altered")
    for chain, rule in plan.jumps():
        listed = firewall.rules_of(chain)
        if not listed or listed[0].split() != ["-A", chain, *rule]:
            problems.append(
                f"{firewall.family.name}: {chain} does not send the {plan.bridges} bridges "
                f"to {rule[-1]} first"
            )
    return problems


def _chain_as_planned(firewall: Firewall, chain: str, rules: list[list[str]]) -> bool:
    """The chain holds exactly these rules, in this order."""
    listed = [line.split() for line in firewall.rules_of(chain)]
    return listed == [["-A", chain, *rule] for rule in rules]


def stack_bridges(prefix: str, net_class: Path = NET_CLASS) -> list[str]:
    """The bridges of the stack that exist now (none before the first `docker compose up`)."""
    if not net_class.is_dir():
        return []
    return sorted(
        entry.name
        for entry in net_class.iterdir()
        if entry.name.startswith(f"{prefix}-") and (entry / "bridge").is_dir()
    )


def families(runner: Runner = run_command) -> list[Family]:
    """IPv4 always (iptables must be there); IPv6 when ip6tables is installed."""
    if shutil.which(IPV4.command) is None and runner is run_command:
        raise SealError("iptables is not installed: apt-get install iptables")
    found = [IPV4]
    if shutil.which(IPV6.command) is not None or runner is not run_command:
        found.append(IPV6)
    return found


def _printing_runner(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """--dry-run: print the changing commands; report every chain and rule as absent."""
    changing = {"-N", "-F", "-A", "-I", "-D", "-X"} & set(argv)
    if changing:
        print(" ".join(argv))
    return subprocess.CompletedProcess(argv, 0 if changing else 1, "", "")


@dataclass
class Outcome:
    """What one run of the command did and found, printed as lines or as one JSON object."""

    action: str
    bridge_prefix: str
    dry_run: bool
    problems: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bridges: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.problems

    def lines(self) -> list[str]:
        if self.error is not None:
            return [f"seal: {self.error}"]
        lines = [f"FAIL {problem}" for problem in self.problems]
        prefix = self.bridge_prefix
        if self.dry_run:
            lines.append(f"dry run: nothing was run; `{self.action}` without --dry-run runs it")
        elif self.action == "remove":
            lines.append(f"seal removed: {', '.join(self.removed) or 'nothing was in place'}")
        elif self.ok:
            present = ", ".join(self.bridges) or "none yet; they are sealed when they appear"
            lines.append(f"ok   seal in place for the {prefix}-* bridges (present: {present})")
        else:
            lines.append(
                f"run `python3 -m ops.packaging.airgap.seal apply --bridge-prefix {prefix}` as root"
            )
        return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m ops.packaging.airgap.seal",
        description="Host firewall rules that keep every container of the appliance from "
        "reaching the host, the network or an outside name (README, 'Sealing the "
        "containers in'). Needs root.",
    )
    parser.add_argument("action", choices=("apply", "remove", "check"))
    parser.add_argument(
        "--bridge-prefix", default=DEFAULT_PREFIX,
        help="the Compose variable BRIDGE_PREFIX: the stack's bridges are PREFIX-*",
    )  # fmt: skip
    parser.add_argument(
        "--allow", action="append", default=[], metavar="ADDRESS:PORT",
        help="a server of the organisation's the containers on the corporate network may "
        "reach (directory, single sign-on, file server), e.g. 10.1.2.3:636; repeat as needed; "
        "give the same list to apply and check",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true", help="print the iptables commands of `apply` or "
        "`remove` instead of running them",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    runner: Runner = _printing_runner if args.dry_run else run_command
    outcome = Outcome(args.action, args.bridge_prefix, args.dry_run)
    try:
        validate_prefix(args.bridge_prefix)
        allowed = [Destination.parse(text) for text in args.allow]
        for family in families(runner):
            firewall = Firewall(family, runner)
            if args.action == "apply":
                found = apply(firewall, args.bridge_prefix, allowed)
                outcome.problems += [] if args.dry_run else found
            elif args.action == "remove":
                removed = remove(firewall, args.bridge_prefix)
                outcome.removed += [f"{family.name}: {item}" for item in removed]
            else:
                outcome.problems += check(firewall, args.bridge_prefix, allowed)
        outcome.bridges = stack_bridges(args.bridge_prefix)
    except SealError as error:
        outcome.error = str(error)
    if args.json:
        print(json.dumps({**asdict(outcome), "ok": outcome.ok}))
    else:
        print("\n".join(outcome.lines()), file=sys.stdout if outcome.error is None else sys.stderr)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
