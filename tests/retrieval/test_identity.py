"""Signing in: the local identity provider, lockout after repeated failures, audit events."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.audit import AuditLog
from retrieval.identity import (
    IdentityProvider,
    LocalIdentity,
    SignInGuard,
    build_identity,
    build_sign_in,
    session_expired,
)
from retrieval.users import User, UserDirectory
from tests.conftest import make_settings

PASSWORD = "alice-password"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingProvider:
    """The local directory, counting how often a password is checked."""

    def __init__(self, inner: IdentityProvider) -> None:
        self.inner, self.checks = inner, 0

    def authenticate(self, name: str, password: str) -> User | None:
        self.checks += 1
        return self.inner.authenticate(name, password)


@pytest.fixture
def directory(tmp_path: Path) -> UserDirectory:
    users = UserDirectory(tmp_path / "users.sqlite3")
    users.add("alice", PASSWORD, ["finance"])
    return users


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit.jsonl", retention_days=30)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(tmp_path: Path, audit: AuditLog, clock: Clock) -> SignInGuard:
    return SignInGuard(tmp_path / "sign-in.sqlite3", 3, 15, audit, clock=clock)


def actions(audit: AuditLog) -> list[str]:
    return [event.action for event in reversed(audit.events(None))]


def test_a_right_password_signs_in_and_is_audited(
    guard: SignInGuard, directory: UserDirectory, audit: AuditLog
) -> None:
    result = guard.sign_in(LocalIdentity(directory), "alice", PASSWORD)
    assert result.outcome == "ok" and result.message_id is None
    assert result.user is not None and result.user.groups == ("finance",)
    (event,) = audit.events(None)
    assert (event.user, event.action, event.detail) == (
        "alice", "login", {"groups": ["finance"], "admin": False}
    )  # fmt: skip


def test_unknown_user_and_wrong_password_look_the_same(
    guard: SignInGuard, directory: UserDirectory, audit: AuditLog
) -> None:
    local = LocalIdentity(directory)
    wrong = guard.sign_in(local, "alice", "not-her-password")
    unknown = guard.sign_in(local, "mallory", PASSWORD)
    assert wrong == unknown
    assert (wrong.outcome, wrong.user, wrong.message_id) == ("wrong", None, "wrong_password")
    assert actions(audit) == ["login_failed", "login_failed"]
    assert [e.user for e in audit.events(None)] == ["mallory", "alice"]
    assert all(PASSWORD not in str(e.detail) for e in audit.events(None))


def test_too_many_failures_lock_the_name_without_checking_the_password(
    guard: SignInGuard, directory: UserDirectory, audit: AuditLog, clock: Clock
) -> None:
    provider = CountingProvider(LocalIdentity(directory))
    for _ in range(3):
        assert guard.sign_in(provider, "alice", "guess").outcome == "wrong"
        clock.now += 60
    locked = guard.sign_in(provider, "alice", PASSWORD)
    assert (locked.outcome, locked.user, locked.message_id) == ("locked", None, "locked")
    assert locked.retry_after_minutes == 14  # locked for 15 minutes from the third failure
    assert provider.checks == 3  # the right password was not even checked
    assert actions(audit) == ["login_failed"] * 3 + ["login_locked"]
    assert audit.events(1)[0].detail == {"retry_after_minutes": 14}
    assert audit.events(2)[1].detail == {"failures": 3, "locked": True}


def test_the_lock_is_per_name(guard: SignInGuard, directory: UserDirectory, clock: Clock) -> None:
    directory.add("bob", "bob-password", [])
    local = LocalIdentity(directory)
    for _ in range(3):
        guard.sign_in(local, "alice", "guess")
    assert guard.sign_in(local, "alice", PASSWORD).outcome == "locked"
    assert guard.sign_in(local, "bob", "bob-password").outcome == "ok"


def test_sign_in_works_again_after_the_window(
    guard: SignInGuard, directory: UserDirectory, clock: Clock
) -> None:
    local = LocalIdentity(directory)
    for _ in range(3):
        guard.sign_in(local, "alice", "guess")
    clock.now += 14 * 60
    assert guard.sign_in(local, "alice", PASSWORD).outcome == "locked"
    clock.now += 60
    assert guard.sign_in(local, "alice", PASSWORD).outcome == "ok"


def test_failures_older_than_the_window_do_not_count(
    guard: SignInGuard, directory: UserDirectory, clock: Clock
) -> None:
    local = LocalIdentity(directory)
    for _ in range(2):
        guard.sign_in(local, "alice", "guess")
    clock.now += 16 * 60
    assert guard.sign_in(local, "alice", "guess").outcome == "wrong"
    assert guard.sign_in(local, "alice", PASSWORD).outcome == "ok"


def test_success_clears_the_failures(
    guard: SignInGuard, directory: UserDirectory, audit: AuditLog
) -> None:
    local = LocalIdentity(directory)
    for _ in range(2):
        guard.sign_in(local, "alice", "guess")
    assert guard.sign_in(local, "alice", PASSWORD).outcome == "ok"
    for _ in range(2):
        assert guard.sign_in(local, "alice", "guess").outcome == "wrong"
    assert guard.sign_in(local, "alice", PASSWORD).outcome == "ok"
    assert audit.events(3)[1].detail == {"failures": 2, "locked": False}


def test_unknown_names_are_locked_like_known_ones(
    guard: SignInGuard, directory: UserDirectory
) -> None:
    local = LocalIdentity(directory)
    for _ in range(3):
        guard.sign_in(local, "mallory", "guess")
    assert guard.sign_in(local, "mallory", "guess").outcome == "locked"


def test_the_lock_survives_a_new_guard_on_the_same_file(
    tmp_path: Path, directory: UserDirectory, audit: AuditLog, clock: Clock
) -> None:
    path = tmp_path / "sign-in.sqlite3"
    for _ in range(3):
        SignInGuard(path, 3, 15, audit, clock=clock).sign_in(LocalIdentity(directory), "alice", "x")
    again = SignInGuard(path, 3, 15, audit, clock=clock)
    assert again.sign_in(LocalIdentity(directory), "alice", PASSWORD).outcome == "locked"


def test_sign_out_is_audited(guard: SignInGuard, audit: AuditLog) -> None:
    guard.sign_out("alice", reason="expired")
    (event,) = audit.events(None)
    assert (event.user, event.action, event.detail) == ("alice", "logout", {"reason": "expired"})


def test_session_expiry() -> None:
    assert not session_expired(1000.0, 1000.0 + 479 * 60, 480)
    assert session_expired(1000.0, 1000.0 + 480 * 60, 480)


def test_the_builders_wire_settings_paths_and_limits(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ui={"max_failed_sign_ins": 2})
    UserDirectory(settings.users_path).add("alice", PASSWORD, [])
    guard, identity = build_sign_in(settings), build_identity(settings)
    for _ in range(2):
        assert guard.sign_in(identity, "alice", "guess").outcome == "wrong"
    assert guard.sign_in(identity, "alice", PASSWORD).outcome == "locked"
    assert AuditLog(settings.audit_path, 365).verify().events == 3
