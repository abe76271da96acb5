"""Proof of zero egress: every socket call of every process, on the whole path, stays local.

The integration test first shows that nothing outside answers in its network namespace (only
loopback), then runs `tests.airgap.egress_driver` there (doctor, ingest with OCR, search, `rag
up`, ask, the API through the OpenAI and MCP SDKs with a user's token, a signed-in question in
headless Chromium, `rag down`) under `strace -f`, which follows every process and thread: `rag`,
the parser workers and Tesseract, the vLLM server and its engine, the API server (`rag serve`,
which `rag up` starts) and its worker threads, the SDK clients, Streamlit, Playwright and every
Chromium process. The log is then judged by `tests.airgap.egress` (the rules are in its
docstring): any destination outside loopback, any DNS, any name lookup a daemon answers, fails
the test, naming the process. The namespace alone would make such attempts fail quietly; the
trace is what shows they are never made, and the test checks that it saw the API server's own
calls.

The other tests here check the judge itself on log lines of each kind.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from settings import OFFLINE_ENVIRONMENT, PROJECT_ROOT
from tests.airgap.egress import STRACE_OPTIONS, judge, judge_log, parse
from tests.conftest import RAG, SAMPLE_SHARE

RESOLVERS = {"10.255.255.53"}


def verdict_of(*lines: str) -> tuple[list[str], int, int, int]:
    """(offending reasons, loopback, route probes, name-service probes) of some log lines."""
    verdict = judge(parse(lines), RESOLVERS)
    reasons = [reason for _, reason in verdict.offending]
    return (
        reasons,
        len(verdict.loopback),
        len(verdict.route_probes),
        len(verdict.name_service_probes),
    )


def test_a_tcp_connect_to_a_public_address_is_egress_even_when_it_fails() -> None:
    line = (
        "41<python> connect(3<TCP:[9]>, {sa_family=AF_INET, sin_port=htons(443), "
        'sin_addr=inet_addr("1.1.1.1")}, 16) = -1 ENETUNREACH (Network is unreachable)'
    )
    assert verdict_of(line) == (["non-loopback destination"], 0, 0, 0)


def test_a_private_address_is_egress_too() -> None:
    line = (
        "41<python> connect(3<TCP:[9]>, {sa_family=AF_INET, sin_port=htons(80), "
        'sin_addr=inet_addr("10.0.0.1")}, 16) = 0'
    )
    assert verdict_of(line)[0] == ["non-loopback destination"]


def test_loopback_in_every_spelling_is_local_and_counted() -> None:
    lines = (
        "7<x> connect(3<TCP:[1]>, {sa_family=AF_INET, sin_port=htons(8010), "
        'sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        "7<x> connect(3<TCP:[1]>, {sa_family=AF_INET, sin_port=htons(8010), "
        'sin_addr=inet_addr("127.3.2.1")}, 16) = 0',
        "7<x> connect(4<TCPv6:[2]>, {sa_family=AF_INET6, sin6_port=htons(80), "
        'sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
        "7<x> connect(4<TCPv6:[2]>, {sa_family=AF_INET6, sin6_port=htons(80), "
        'sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), '
        "sin6_scope_id=0}, 28) = 0",
    )
    assert verdict_of(*lines) == ([], 4, 0, 0)


def test_dns_is_egress_to_any_resolver_and_on_any_address() -> None:
    lines = (
        "9<getent> connect(3<UDP:[5]>, {sa_family=AF_INET, sin_port=htons(53), "
        'sin_addr=inet_addr("127.0.0.53")}, 16) = 0',
        "9<getent> connect(3<TCP:[5]>, {sa_family=AF_INET, sin_port=htons(5353), "
        'sin_addr=inet_addr("10.255.255.53")}, 16) = -1 ENETUNREACH (Network is unreachable)',
    )
    assert verdict_of(*lines)[0] == ["DNS", "DNS"]


def test_a_lookup_that_finds_no_name_daemon_is_reported_and_one_that_reaches_it_fails() -> None:
    absent = (
        "9<python> connect(3<UNIX-STREAM:[5]>, {sa_family=AF_UNIX, "
        'sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)'
    )
    present = absent.replace("-1 ENOENT (No such file or directory)", "0")
    assert verdict_of(absent) == ([], 0, 0, 1)
    assert verdict_of(present)[0] == ["name lookup reached a daemon"]


def test_known_udp_route_probes_are_reported_and_other_udp_connects_fail() -> None:
    chromium_probe = (
        "8<Chrome_ChildIOT> connect(25<UDPv6:[4]>, {sa_family=AF_INET6, sin6_port=htons(443), "
        'sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:4860:4860::8888", &sin6_addr), '
        "sin6_scope_id=0}, 28) = -1 ENETUNREACH (Network is unreachable)"
    )
    telemetry = (
        "8<python> connect(5<UDP:[4]>, {sa_family=AF_INET, sin_port=htons(8125), "
        'sin_addr=inet_addr("34.1.2.3")}, 16) = -1 ENETUNREACH (Network is unreachable)'
    )
    assert verdict_of(chromium_probe) == ([], 0, 1, 0)
    assert verdict_of(telemetry)[0] == ["non-loopback destination"]
    as_tcp = chromium_probe.replace("UDPv6", "TCPv6")
    assert verdict_of(as_tcp)[0] == ["non-loopback destination"]


def test_sends_with_an_address_and_sends_on_a_connected_socket_are_judged() -> None:
    lines = (
        '5<python> sendto(3<UDP:[7]>, "\\"sin_addr=inet_addr(\\"127.0.0.1\\")"..., 20, 0, '
        '{sa_family=AF_INET, sin_port=htons(9), sin_addr=inet_addr("8.8.4.4")}, 16) = 20',
        "5<python> sendmsg(3<UDP:[7]>, {msg_name={sa_family=AF_INET6, sin6_port=htons(9), "
        'sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2a00:1450::1", &sin6_addr), '
        "sin6_scope_id=0}, msg_namelen=28, msg_iov=[], msg_iovlen=0, msg_controllen=0, "
        "msg_flags=0}, 0) = 0",
        '5<python> sendto(4<TCP:[10.0.0.2:4000->93.184.216.34:443]>, "x", 1, 0, NULL, 0) = 1',
        '5<python> sendto(4<TCP:[127.0.0.1:4000->127.0.0.1:8501]>, "x", 1, 0, NULL, 0) = 1',
    )
    assert verdict_of(*lines) == (["non-loopback destination"] * 3, 1, 0, 0)


def test_an_unexpected_address_family_fails() -> None:
    line = (
        '5<tool> sendto(3<PACKET:[1]>, ""..., 60, 0, {sa_family=AF_PACKET, '
        "sll_protocol=htons(ETH_P_IP), sll_ifindex=2}, 20) = 60"
    )
    assert verdict_of(line)[0] == ["unexpected address family AF_PACKET"]


def test_an_unfinished_call_takes_its_result_from_its_resumption_in_the_same_thread() -> None:
    lines = (
        "8<nscd-user> connect(3<UNIX-STREAM:[5]>, {sa_family=AF_UNIX, "
        'sun_path="/var/run/nscd/socket"}, 110 <unfinished ...>',
        "9<other> connect(4<TCP:[6]>, {sa_family=AF_INET, sin_port=htons(1), "
        'sin_addr=inet_addr("127.0.0.1")}, 16) = -1 ECONNREFUSED (Connection refused)',
        "8<nscd-user> <... connect resumed>) = 0",
    )
    assert verdict_of(*lines) == (["name lookup reached a daemon"], 1, 0, 0)


def test_kernel_and_local_sockets_are_not_network() -> None:
    lines = (
        "3<ip> sendmsg(4<NETLINK:[1]>, {msg_name={sa_family=AF_NETLINK, nl_pid=0, "
        "nl_groups=00000000}, msg_namelen=12, msg_iov=[], msg_iovlen=1, msg_controllen=0, "
        "msg_flags=0}, 0) = 48",
        "3<chromium> connect(5<UNIX-STREAM:[2]>, {sa_family=AF_UNIX, "
        'sun_path="/run/dbus/system_bus_socket"}, 29) = -1 ENOENT (No such file or directory)',
        '3<python> connect(6<UDP:[3]>, {sa_family=AF_UNSPEC, sa_data=""}, 16) = 0',
    )
    assert verdict_of(*lines) == ([], 0, 0, 0)


def _environment(tmp_path: Path, out: Path) -> dict[str, str]:
    """The test's environment without RAG_ settings, offline switches or proxies."""
    dropped = {*OFFLINE_ENVIRONMENT, "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RAG_") and k.upper() not in dropped
    }
    env.update(
        RAG_DATA_DIR=str(tmp_path / "data"),
        RAG_LLM__STARTUP_TIMEOUT_SECONDS="900",
        RAG_UI__STARTUP_TIMEOUT_SECONDS="300",
        OUT=str(out),
        PYTHON=str(RAG.parent / "python"),
    )
    return env


# Before the trace starts, the namespace is shown to be cut off: nothing outside answers and no
# name resolves (an attempt made under the trace would count as egress).
ISOLATION_PROBE = """
import errno, socket
for host, port in (("1.1.1.1", 443), ("10.0.0.1", 80)):
    with socket.socket() as s:
        s.settimeout(3)
        assert s.connect_ex((host, port)) == errno.ENETUNREACH, host
try:
    socket.getaddrinfo("pypi.org", 443)
    raise SystemExit("DNS resolved inside the namespace")
except socket.gaierror:
    pass
print("isolated")
"""
DRIVER = (
    'ip link set lo up && "$PYTHON" -c "$ISOLATION_PROBE" > "$OUT/probe.txt" && '
    f'exec strace {shlex.join(STRACE_OPTIONS)} -o "$LOG" '
    '"$PYTHON" -m tests.airgap.egress_driver "$OUT" "$SHARE"'
)


@pytest.mark.integration
def test_the_whole_path_makes_no_attempt_to_reach_outside_this_machine(tmp_path: Path) -> None:
    for tool in ("unshare", "strace", "ip", "chromium"):
        if shutil.which(tool) is None:
            pytest.fail(f"the egress test needs {tool}; run `make setup`")
    out = tmp_path / "out"
    out.mkdir()
    share = tmp_path / "share"
    shutil.copytree(SAMPLE_SHARE, share)
    log = tmp_path / "strace.log"
    env = _environment(tmp_path, out) | {
        "SHARE": str(share), "LOG": str(log), "ISOLATION_PROBE": ISOLATION_PROBE
    }  # fmt: skip
    run = subprocess.run(
        ["unshare", "--net", "--", "bash", "-c", DRIVER],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=2700,
    )
    probe = out / "probe.txt"
    assert probe.exists() and probe.read_text().strip() == "isolated", run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    print(f"\nstrace log: {log} ({log.stat().st_size // 1024} KiB)")

    verdict = judge_log(log)
    assert not verdict.offending, "traffic that would leave this machine:\n" + verdict.report()
    for probe in verdict.route_probes:
        print(f"route probe (no packet sent): {probe.describe()}")
    assert run.returncode == 0, results.get("error") or run.stderr[-3000:]

    # The namespace had loopback only, and the trace saw the traffic that did happen.
    interfaces = [line.split(":")[1].strip() for line in results["interfaces"].splitlines()]
    assert interfaces == ["lo"]
    ui_port, llm_port = results["ui_port"], results["llm_port"]
    assert {ui_port, llm_port} <= verdict.loopback_ports(), "tracing missed the stack's traffic"
    chromium_ports = {a.port for a in verdict.loopback if a.process.startswith(("Chrome", "chrom"))}
    assert ui_port in chromium_ports, "tracing missed Chromium's connection to the UI"
    api_port, driver_pid = results["api_port"], results["driver_pid"]
    client_ports = {a.port for a in verdict.loopback if a.pid == driver_pid}
    assert api_port in client_ports, "tracing missed the SDK clients' connections to the API"
    # strace names a call by its thread; the driver listed the API server's threads.
    api_threads = set(results["api"]["api_threads"])
    assert results["api_pid"] in api_threads
    from_api = [a for a in verdict.loopback if a.pid in api_threads]
    assert results["api_pid"] in {a.pid for a in from_api}, "tracing missed the API's replies"
    assert llm_port in {a.port for a in from_api if a.syscall == "connect"}, (
        "tracing missed the API server's calls to the LLM server"
    )

    # Each step did its job.
    before = {c["name"]: c for c in results["doctor_before"]["json"]["checks"]}
    assert all(before[f"offline:{name}"]["ok"] for name in OFFLINE_ENVIRONMENT), before
    assert before["egress"]["ok"], before["egress"]
    ingest = results["ingest"]["json"]
    assert (ingest["indexed"], ingest["failed"]) == (6, []), results["ingest"]
    memo = str(share / "finance" / "harbour-renovation-memo.png")
    searched = results["search"]
    assert searched["exit"] == 0 and searched["json"]["hits"][0]["path"] == memo, searched
    assert results["service_switches"] == {"llm-server": [], "api": [], "ui": []}
    doctor_up = results["doctor_up"]
    assert doctor_up["exit"] == 0 and doctor_up["json"]["ok"] is True, doctor_up
    assert {"llm_server", "ui"} <= {c["name"] for c in doctor_up["json"]["checks"]}
    answer = results["ask"]["json"]
    assert answer["refused"] is False and "4,750,000" in answer["answer"], answer
    assert [c["path"] for c in answer["citations"]] == [memo]
    assert results["token"] == {"exit": 0, "user": "egress-reader"}
    api = results["api"]
    assert api["models"] == ["rag"]
    for reply in (api["chat"], api["stream"]):
        assert reply["refused"] is False and "4,750,000" in reply["answer"], reply
        assert reply["citations"] == [memo], reply
    assert api["stream"]["finish_reason"] == "stop"
    assert api["search"]["status"] == 200 and api["search"]["paths"][0] == memo, api["search"]
    assert api["mcp"]["tools"] == ["ask", "search"] and api["mcp"]["paths"][0] == memo, api["mcp"]
    browser = results["browser"]
    assert "4,750,000" in browser["answer"] and browser["memo_sources"] == 1, browser
    assert browser["requests"] and browser["websockets"] and browser["foreign"] == [], browser
    assert results["down"]["json"] == {}
