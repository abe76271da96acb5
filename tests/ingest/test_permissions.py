import os
import pwd
from pathlib import Path

import pytest

from ingest.permissions import principals_from_stat


def test_mode_bits_become_principals(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    owner = f"user:{pwd.getpwuid(os.getuid()).pw_name}"
    path.chmod(0o600)
    assert principals_from_stat(path.stat()) == {owner}
    path.chmod(0o644)
    principals = principals_from_stat(path.stat())
    assert owner in principals and "everyone" in principals
    assert any(p.startswith(("group:", "gid:")) for p in principals)
    path.chmod(0o000)
    assert principals_from_stat(path.stat()) == frozenset()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another owner needs root")
def test_ids_without_a_name_stay_numeric(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    os.chown(path, 54321, 54322)
    path.chmod(0o640)
    assert principals_from_stat(path.stat()) == {"uid:54321", "gid:54322"}
