"""The Active Directory domain the directory and SMB tests run against (one per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.directory.samba_domain import SambaDomain, samba_available


@pytest.fixture(scope="session")
def samba_domain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDomain]:
    if not samba_available():
        pytest.fail("Samba is not installed: run make setup (it installs samba and smbclient)")
    domain = SambaDomain(tmp_path_factory.mktemp("samba-domain"))
    try:
        domain.start()
        yield domain
    finally:
        domain.stop()
