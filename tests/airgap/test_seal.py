"""The seal's firewall rules: what they hold, and applied, checked and removed on this host's
real iptables under a prefix of their own (no bridge carries it, so no traffic changes)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from ops.packaging.airgap import seal

needs_root_iptables = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables") is None,
    reason="changing the host firewall needs root and iptables",
)


def filter_table(command: str = "iptables") -> list[str]:
    """The filter table's rules without counters, as iptables-save prints them."""
    saved = subprocess.run(
        [f"{command}-save", "-t", "filter"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in saved.splitlines() if line.startswith(("-A", ":"))
            and not line.startswith("#")]  # fmt: skip


def without_counters(lines: list[str]) -> list[str]:
    return [line.split(" [")[0] if line.startswith(":") else line for line in lines]


@pytest.fixture
def prefix() -> Iterator[str]:
    """A bridge prefix no interface of this host has, removed again whatever the test did."""
    name = "t" + secrets.token_hex(3)
    yield name
    for family in seal.families():
        seal.remove(seal.Firewall(family), name)


def test_the_forward_rules_pass_replies_and_same_bridge_traffic_and_reject_the_rest() -> None:
    plan = seal.Plan(seal.IPV4, "rag")
    rules = plan.forward_rules()
    assert rules[0] == ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"]
    assert rules[1] == ["-m", "physdev", "--physdev-is-bridged", "-j", "RETURN"]
    assert rules[-1][:2] == ["-j", "REJECT"] and len(rules) == 3


def test_the_host_rules_pass_only_replies() -> None:
    rules = seal.Plan(seal.IPV6, "rag").input_rules()
    assert [rule[-1] for rule in rules] == ["RETURN", "icmp6-adm-prohibited"]
    assert "ESTABLISHED" in rules[0][3] and "NEW" not in rules[0][3]


def test_the_jumps_catch_every_bridge_of_the_prefix_in_docker_user_and_input() -> None:
    plan = seal.Plan(seal.IPV4, "rag")
    assert plan.jumps() == [
        ("DOCKER-USER", ["-i", "rag-+", "-j", "RAG-SEAL-FWD"]),
        ("INPUT", ["-i", "rag-+", "-j", "RAG-SEAL-IN"]),
    ]


@pytest.mark.parametrize("bad", ["", "Rag", "1rag", "rag-x", "toolongname", "rag+"])
def test_a_prefix_that_cannot_name_a_bridge_is_refused(bad: str) -> None:
    with pytest.raises(seal.SealError, match="bridge prefix"):
        seal.validate_prefix(bad)


def test_a_dry_run_prints_the_commands_of_both_families(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert seal.main(["apply", "--bridge-prefix", "rag", "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert "iptables -w 10 -t filter -I DOCKER-USER 1 -i rag-+ -j RAG-SEAL-FWD" in printed
    assert "ip6tables -w 10 -t filter -I INPUT 1 -i rag-+ -j RAG-SEAL-IN" in printed
    assert any(line.startswith("dry run: nothing was run") for line in printed)


@needs_root_iptables
def test_a_dry_run_changes_nothing(prefix: str) -> None:
    before = without_counters(filter_table())
    assert seal.main(["apply", "--bridge-prefix", prefix, "--dry-run"]) == 0
    assert without_counters(filter_table()) == before


@needs_root_iptables
def test_apply_twice_check_and_remove_leave_the_tables_as_they_were(prefix: str) -> None:
    firewall = seal.Firewall(seal.IPV4)
    before = without_counters(filter_table())
    assert seal.check(firewall, prefix) != []
    assert seal.apply(firewall, prefix) == []
    once = without_counters(filter_table())
    assert seal.apply(firewall, prefix) == []
    assert without_counters(filter_table()) == once
    assert f"-A INPUT -i {prefix}-+ -j {prefix.upper()}-SEAL-IN" in once
    assert f"-A DOCKER-USER -i {prefix}-+ -j {prefix.upper()}-SEAL-FWD" in once
    assert sorted(seal.remove(firewall, prefix)) == sorted(
        ["jump from DOCKER-USER", "jump from INPUT",
         f"chain {prefix.upper()}-SEAL-FWD", f"chain {prefix.upper()}-SEAL-IN"]
    )  # fmt: skip
    after = without_counters(filter_table())
    # DOCKER-USER exists on a host running Docker; apply creates it only where it did not.
    assert [line for line in after if "DOCKER-USER" not in line] == [
        line for line in before if "DOCKER-USER" not in line
    ]
    assert seal.remove(firewall, prefix) == []


@needs_root_iptables
def test_check_names_an_altered_chain_and_a_jump_moved_down_and_apply_repairs_both(
    prefix: str,
) -> None:
    firewall = seal.Firewall(seal.IPV4)
    plan = seal.Plan(seal.IPV4, prefix)
    seal.apply(firewall, prefix)
    subprocess.run(["iptables", "-D", plan.input_chain, *plan.input_rules()[-1]], check=True)
    subprocess.run(["iptables", "-I", "INPUT", "1", "-i", "lo", "-j", "RETURN"], check=True)
    try:
        problems = seal.check(firewall, prefix)
        assert any(plan.input_chain in problem and "altered" in problem for problem in problems)
        assert any(problem.startswith("ipv4: INPUT does not send") for problem in problems)
        assert seal.apply(firewall, prefix) == []
        assert firewall.rules_of("INPUT")[0] == f"-A INPUT -i {prefix}-+ -j {plan.input_chain}"
    finally:
        subprocess.run(["iptables", "-D", "INPUT", "-i", "lo", "-j", "RETURN"], check=True)


@needs_root_iptables
def test_the_command_reports_check_failures_with_its_exit_status(
    prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert seal.main(["check", "--bridge-prefix", prefix]) == 1
    assert "FAIL ipv4" in capsys.readouterr().out
    assert seal.main(["apply", "--bridge-prefix", prefix, "--json"]) == 0
    assert seal.main(["check", "--bridge-prefix", prefix]) == 0
    assert "seal in place" in capsys.readouterr().out


def test_allowed_servers_pass_before_the_rejection_each_in_its_own_family() -> None:
    allowed = (seal.Destination.parse("10.1.2.3:636"), seal.Destination.parse("[fd00::5]:445"))
    ipv4 = seal.Plan(seal.IPV4, "rag", allowed).forward_rules()
    assert ipv4[2] == ["-d", "10.1.2.3/32", "-p", "tcp", "-m", "tcp", "--dport", "636", "-j",
                       "RETURN"]  # fmt: skip
    assert ipv4[-1][:2] == ["-j", "REJECT"] and len(ipv4) == 4
    ipv6 = seal.Plan(seal.IPV6, "rag", allowed).forward_rules()
    assert ipv6[2][:2] == ["-d", "fd00::5/128"] and len(ipv6) == 4


@pytest.mark.parametrize("bad", ["10.1.2.3", "10.1.2.3:0", "server.corp:636", "10.1.2.3:http"])
def test_an_allowed_server_without_an_address_and_port_is_refused(bad: str) -> None:
    with pytest.raises(seal.SealError, match="address or network and a TCP port"):
        seal.Destination.parse(bad)


@needs_root_iptables
def test_the_allowed_servers_are_applied_and_checked_as_given(prefix: str) -> None:
    firewall = seal.Firewall(seal.IPV4)
    allow = ["--bridge-prefix", prefix, "--allow", "10.254.54.2:636"]
    assert seal.main(["apply", *allow]) == 0
    forward = seal.Plan(seal.IPV4, prefix).forward_chain
    assert f"-A {forward} -d 10.254.54.2/32 -p tcp -m tcp --dport 636 -j RETURN" in (
        firewall.rules_of(forward)
    )
    assert any("altered" in problem for problem in seal.check(firewall, prefix))
    assert seal.main(["check", *allow]) == 0
