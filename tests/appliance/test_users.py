import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

import appliance.users
from appliance.errors import UnknownUser
from appliance.users import (
    PASSWORD_COST,
    InvalidUser,
    ScryptCost,
    UserDirectory,
    hash_password,
    needs_rehash,
    verify_password,
)
from retrieval.access import Scope


@pytest.fixture
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests about the directory, not hashing: new hashes at the first format's cost."""
    monkeypatch.setattr(appliance.users, "PASSWORD_COST", ScryptCost(log2_n=14, r=8, p=1))


def test_passwords_are_salted_hashes_that_verify(quick_hashes: None) -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and "correct horse" not in first
    assert verify_password("correct horse", first)
    assert not verify_password("wrong horse", first)
    assert not verify_password("x", "plain-text-password")


def test_a_user_signs_in_and_gets_its_principals(tmp_path: Path, quick_hashes: None) -> None:
    users = UserDirectory(tmp_path / "users.sqlite3")
    users.add("alice", "s3cret-pass", ["finance", "staff"], admin=True)
    user = users.authenticate("alice", "s3cret-pass")
    assert user is not None and user.admin
    assert user.principals == {
        "user:alice",
        "group:finance",
        "group:staff",
        "everyone",
        "sids:unknown",
    }
    assert users.authenticate("alice", "wrong-pass") is None
    assert users.authenticate("mallory", "s3cret-pass") is None


def test_adding_again_replaces_password_and_groups(tmp_path: Path, quick_hashes: None) -> None:
    users = UserDirectory(tmp_path / "users.sqlite3")
    users.add("bob", "first-password", ["a"])
    users.add("bob", "second-password", ["b"])
    assert users.authenticate("bob", "first-password") is None
    assert users.get("bob").groups == ("b",)
    assert [u.name for u in users.list()] == ["bob"]


def test_unknown_users_and_bad_input_are_refused(tmp_path: Path) -> None:
    users = UserDirectory(tmp_path / "users.sqlite3")
    with pytest.raises(UnknownUser):
        users.get("ghost")
    with pytest.raises(InvalidUser):
        users.add("bad name", "long-enough", [])
    with pytest.raises(InvalidUser):
        users.add("carol", "short", [])


def test_an_empty_scope_sees_nothing_but_the_operator_sees_all() -> None:
    assert Scope.of(set()).sees_nothing
    assert not Scope.operator().sees_nothing
    assert not Scope.of({"everyone"}).sees_nothing


def test_new_hashes_are_scrypt_at_the_current_guidance_and_record_their_cost() -> None:
    assert (PASSWORD_COST.log2_n, PASSWORD_COST.r, PASSWORD_COST.p) == (17, 8, 1)
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$ln=17,r=8,p=1$")
    assert not needs_rehash(stored)


def legacy_hash(password: str) -> str:
    """A hash as the directory wrote them first: scrypt$SALT$DIGEST at N = 2^14."""
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def test_an_old_hash_still_signs_in_and_is_rehashed_at_the_current_cost(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite3"
    users = UserDirectory(path)
    users.add("alice", "placeholder", ["finance"])
    old = legacy_hash("old-password")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE users SET password_hash = ? WHERE name = 'alice'", (old,))

    def stored() -> str:
        with sqlite3.connect(path) as db:
            return str(db.execute("SELECT password_hash FROM users").fetchone()[0])

    assert needs_rehash(old) and verify_password("old-password", old)
    assert users.authenticate("alice", "wrong-password") is None
    assert stored() == old  # a wrong password changes nothing
    assert users.authenticate("alice", "old-password") == users.get("alice")
    assert stored().startswith("scrypt$ln=17,r=8,p=1$") and stored() != old
    assert users.authenticate("alice", "old-password") is not None


@pytest.mark.parametrize(
    "doctored",
    [
        "scrypt$ln=24,r=8,p=1$00$00",  # 2 GiB of memory per check
        "scrypt$ln=17,r=64,p=1$00$00",
        "scrypt$ln=17,r=8,p=64$00$00",
        "scrypt$ln=4,r=8,p=1$00$00",  # too cheap to be one of ours
        "scrypt$ln=17,r=8,p=1$not-hex$00",
        "plain-text-password",
    ],
)
def test_a_doctored_hash_is_refused_without_computing_it(doctored: str) -> None:
    started = time.monotonic()
    assert not verify_password("any-password", doctored)
    assert time.monotonic() - started < 0.05
