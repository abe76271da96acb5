from pathlib import Path

import pytest

from retrieval.access import Scope
from retrieval.errors import UnknownUser
from retrieval.users import InvalidUser, UserDirectory, hash_password, verify_password


def test_passwords_are_salted_hashes_that_verify() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and "correct horse" not in first
    assert verify_password("correct horse", first)
    assert not verify_password("wrong horse", first)
    assert not verify_password("x", "plain-text-password")


def test_a_user_signs_in_and_gets_its_principals(tmp_path: Path) -> None:
    users = UserDirectory(tmp_path / "users.sqlite3")
    users.add("alice", "s3cret-pass", ["finance", "staff"], admin=True)
    user = users.authenticate("alice", "s3cret-pass")
    assert user is not None and user.admin
    assert user.principals == {"user:alice", "group:finance", "group:staff", "everyone"}
    assert users.authenticate("alice", "wrong-pass") is None
    assert users.authenticate("mallory", "s3cret-pass") is None


def test_adding_again_replaces_password_and_groups(tmp_path: Path) -> None:
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
