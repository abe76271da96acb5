"""The autouse guard in conftest.py: tests reach this machine and nothing else."""

import socket

import httpx
import pytest

from tests.conftest import NetworkBlocked, free_port


def test_an_outside_address_is_blocked() -> None:
    with socket.socket() as sock, pytest.raises(NetworkBlocked):
        sock.connect(("192.0.2.10", 443))


def test_a_host_name_is_blocked_before_any_lookup_leaves() -> None:
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("huggingface.co", 443)
    with pytest.raises((NetworkBlocked, httpx.HTTPError), match="blocked"):
        httpx.get("https://huggingface.co/api/models", timeout=3, trust_env=False)


def test_loopback_stays_open() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        with socket.socket() as client:
            client.connect(server.getsockname())


def test_only_the_tests_own_namespace_is_open_beyond_loopback() -> None:
    from tests.conftest import TEST_NAMESPACE_NETWORK

    beyond = TEST_NAMESPACE_NETWORK.broadcast_address + 1
    with socket.socket() as sock, pytest.raises(NetworkBlocked):
        sock.connect((str(beyond), 389))
