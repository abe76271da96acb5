"""Signing in: the local identity provider, throttling per client address and per name,
audit events, and sessions that follow the directory."""

from __future__ import annotations

import ipaddress
import stat
import statistics
import threading
import time
from pathlib import Path

import pytest

import appliance.users
from appliance.audit import AuditLog
from appliance.identity import (
    IdentityProvider,
    LocalIdentity,
    SignInGuard,
    SignInResult,
    build_identity,
    build_sign_in,
    client_address,
    session_change,
    session_expired,
    sign_in_key_path,
)
from appliance.users import ScryptCost, User, UserDirectory
from tests.conftest import make_settings

PASSWORD = "alice-password"
ATTACKER = "203.0.113.7"
OFFICE = "10.20.30.40"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingProvider:
    """The local directory, counting how often a password is checked (from any thread)."""

    def __init__(self, inner: IdentityProvider) -> None:
        self.inner, self.checks = inner, 0
        self.refresh_seconds = inner.refresh_seconds
        self._lock = threading.Lock()

    def authenticate(self, name: str, password: str) -> User | None:
        with self._lock:
            self.checks += 1
        return self.inner.authenticate(name, password)

    def lookup(self, name: str) -> User | None:
        return self.inner.lookup(name)


@pytest.fixture
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests about counting, not hashing: new hashes at the first format's cost."""
    monkeypatch.setattr(appliance.users, "PASSWORD_COST", ScryptCost(log2_n=14, r=8, p=1))


@pytest.fixture
def directory(tmp_path: Path, quick_hashes: None) -> UserDirectory:
    users = UserDirectory(tmp_path / "users.sqlite3")
    users.add("alice", PASSWORD, ["finance"])
    return users


@pytest.fixture
def real_cost_directory(tmp_path: Path) -> UserDirectory:
    """Hashes at the production cost, as the regression tests of the sign-in attacks need."""
    cost = appliance.users.PASSWORD_COST
    assert (cost.log2_n, cost.r, cost.p) == (17, 8, 1)
    users = UserDirectory(tmp_path / "users.sqlite3")
    users.add("alice", PASSWORD, ["finance"])
    users.add("root-admin", "root-admin-password", ["it"], admin=True)
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
    result = guard.sign_in(LocalIdentity(directory), "alice", PASSWORD, OFFICE)
    assert result.outcome == "ok" and result.message_id is None
    assert result.user is not None and result.user.groups == ("finance",)
    (event,) = audit.events(None)
    assert (event.user, event.action, event.detail) == (
        "alice", "login", {"groups": ["finance"], "admin": False, "address": OFFICE}
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
    assert [e.user for e in audit.events(None)] == [guard.unknown_name("mallory"), "alice"]
    assert all(PASSWORD not in str(e.detail) for e in audit.events(None))


def test_too_many_failures_from_one_address_refuse_it_without_checking_the_password(
    guard: SignInGuard, directory: UserDirectory, audit: AuditLog, clock: Clock
) -> None:
    provider = CountingProvider(LocalIdentity(directory))
    for _ in range(3):
        assert guard.sign_in(provider, "alice", "guess", ATTACKER).outcome == "wrong"
        clock.now += 60
    locked = guard.sign_in(provider, "alice", PASSWORD, ATTACKER)
    assert (locked.outcome, locked.user, locked.message_id) == ("locked", None, "locked")
    assert locked.retry_after_minutes == 14  # refused for 15 minutes from the third failure
    assert provider.checks == 3  # the right password was not even checked
    # Nor another name's, from that address.
    assert guard.sign_in(provider, "bob", "guess", ATTACKER).outcome == "locked"
    assert provider.checks == 3
    assert actions(audit) == ["login_failed"] * 3 + ["login_locked"] * 2
    assert audit.events(2)[1].detail == {
        "retry_after_minutes": 14, "address": ATTACKER, "throttled": "address"
    }  # fmt: skip
    assert audit.events(3)[2].detail == {"failures": 3, "locked": True, "address": ATTACKER}


def test_a_name_guessed_from_many_addresses_waits_longer_after_each_failure(
    guard: SignInGuard, directory: UserDirectory, audit: AuditLog, clock: Clock
) -> None:
    provider = CountingProvider(LocalIdentity(directory))
    addresses = (f"198.51.100.{n}" for n in range(1, 100))
    # Twice the per-address limit, from addresses that each stay below it.
    for _ in range(6):
        assert guard.sign_in(provider, "alice", "guess", next(addresses)).outcome == "wrong"
    waits = []
    for _ in range(6):
        refused = guard.sign_in(provider, "alice", "guess", next(addresses))
        assert refused.outcome == "locked" and refused.retry_after_minutes is not None
        waits.append(refused.retry_after_minutes)
        clock.now += refused.retry_after_minutes * 60
        assert guard.sign_in(provider, "alice", "guess", next(addresses)).outcome == "wrong"
    assert waits == [1, 2, 4, 8, 15, 15]  # doubling, at most the window
    assert audit.events(2)[1].detail["throttled"] == "name"
    assert provider.checks == 12
    # A wait, never a lock: once it has passed, the right password signs in.
    clock.now += 15 * 60
    assert guard.sign_in(provider, "alice", PASSWORD, OFFICE).outcome == "ok"


def test_another_name_and_another_address_are_not_throttled(
    guard: SignInGuard, directory: UserDirectory
) -> None:
    directory.add("bob", "bob-password", [])
    local = LocalIdentity(directory)
    for _ in range(3):
        guard.sign_in(local, "alice", "guess", ATTACKER)
    assert guard.sign_in(local, "alice", PASSWORD, ATTACKER).outcome == "locked"
    assert guard.sign_in(local, "bob", "bob-password", OFFICE).outcome == "ok"
    assert guard.sign_in(local, "alice", PASSWORD, OFFICE).outcome == "ok"


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
    assert audit.events(3)[1].detail == {"failures": 2, "locked": False, "address": "unknown"}


def test_a_right_password_as_the_last_allowed_attempt_leaves_the_address_free(
    guard: SignInGuard, directory: UserDirectory
) -> None:
    local = LocalIdentity(directory)
    for _ in range(2):
        guard.sign_in(local, "alice", "guess", OFFICE)
    assert guard.sign_in(local, "alice", PASSWORD, OFFICE).outcome == "ok"
    assert guard.sign_in(local, "alice", "guess", OFFICE).outcome == "wrong"


def test_one_account_signing_in_does_not_clear_its_address_of_guesses_at_others(
    guard: SignInGuard, directory: UserDirectory
) -> None:
    directory.add("mallory", "mallory-password", [])
    local = LocalIdentity(directory)
    for _ in range(2):
        assert guard.sign_in(local, "alice", "guess", ATTACKER).outcome == "wrong"
        assert guard.sign_in(local, "mallory", "mallory-password", ATTACKER).outcome == "ok"
    assert guard.sign_in(local, "alice", "guess", ATTACKER).outcome == "wrong"
    assert guard.sign_in(local, "alice", PASSWORD, ATTACKER).outcome == "locked"


def test_unknown_names_are_throttled_like_known_ones(
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
    guard.sign_out("alice", reason="removed")
    (event,) = audit.events(None)
    assert (event.user, event.action, event.detail) == ("alice", "logout", {"reason": "removed"})


def test_session_expiry() -> None:
    assert not session_expired(1000.0, 1000.0 + 479 * 60, 480)
    assert session_expired(1000.0, 1000.0 + 480 * 60, 480)


def test_a_session_ends_when_its_user_is_removed_demoted_or_regrouped(
    directory: UserDirectory,
) -> None:
    local = LocalIdentity(directory)
    assert local.refresh_seconds == 0  # the local directory is read on every request
    directory.add("root", "root-password", ["it"], admin=True)
    signed_in = directory.get("root")
    assert session_change(local, signed_in) is None
    directory.add("root", "root-password", ["it"], admin=False)
    assert session_change(local, signed_in) == "changed"
    directory.add("root", "root-password", ["it", "hr"], admin=True)
    assert session_change(local, signed_in) == "changed"
    directory.remove("root")
    assert session_change(local, signed_in) == "removed"


def test_the_builders_wire_settings_paths_and_limits(tmp_path: Path, quick_hashes: None) -> None:
    settings = make_settings(tmp_path, ui={"max_failed_sign_ins": 2})
    UserDirectory(settings.users_path).add("alice", PASSWORD, [])
    guard, identity = build_sign_in(settings), build_identity(settings)
    for _ in range(2):
        assert guard.sign_in(identity, "alice", "guess").outcome == "wrong"
    assert guard.sign_in(identity, "alice", PASSWORD).outcome == "locked"
    assert AuditLog(settings.audit_path, 365).verify().events == 3
    assert sign_in_key_path(tmp_path / "sign-in.sqlite3").exists()


def test_an_old_failure_table_is_dropped(tmp_path: Path, audit: AuditLog) -> None:
    import sqlite3

    path = tmp_path / "sign-in.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE sign_in_failures (name TEXT NOT NULL, at REAL NOT NULL)")
        db.execute("INSERT INTO sign_in_failures VALUES ('typed-password', 1.0)")
    SignInGuard(path, 3, 15, audit)
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "sign_in_failures" not in tables


# The attacks of the security review.


def test_concurrent_wrong_passwords_cannot_exceed_the_failure_limit(
    tmp_path: Path, real_cost_directory: UserDirectory, audit: AuditLog
) -> None:
    guard = SignInGuard(tmp_path / "sign-in.sqlite3", 5, 15, audit)
    provider = CountingProvider(LocalIdentity(real_cost_directory))
    start = threading.Barrier(24)
    results: list[SignInResult] = []

    def attempt(name: str, address: str) -> None:
        start.wait()
        results.append(guard.sign_in(provider, name, "guess", address))

    def attack(name: str, addresses: list[str]) -> None:
        threads = [threading.Thread(target=attempt, args=(name, a)) for a in addresses]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    attack("alice", [ATTACKER] * 24)  # from one address: the address's limit
    assert provider.checks == 5
    assert sorted(r.outcome for r in results) == ["locked"] * 19 + ["wrong"] * 5
    # From 24 addresses at once: the name's limit, twice the address's.
    provider.checks, results[:] = 0, []
    attack("root-admin", [f"198.51.100.{n}" for n in range(24)])
    assert provider.checks == 10
    assert sorted(r.outcome for r in results) == ["locked"] * 14 + ["wrong"] * 10


def test_wrong_passwords_from_one_address_do_not_lock_the_admin_out_elsewhere(
    tmp_path: Path, real_cost_directory: UserDirectory, audit: AuditLog, clock: Clock
) -> None:
    guard = SignInGuard(tmp_path / "sign-in.sqlite3", 5, 15, audit, clock=clock)
    local = LocalIdentity(real_cost_directory)
    outcomes = [guard.sign_in(local, "root-admin", "guess", ATTACKER).outcome for _ in range(20)]
    assert outcomes == ["wrong"] * 5 + ["locked"] * 15
    at_the_office = guard.sign_in(local, "root-admin", "root-admin-password", OFFICE)
    assert at_the_office.outcome == "ok"
    # The attacker's address stays refused, whatever name it tries.
    assert guard.sign_in(local, "root-admin", "root-admin-password", ATTACKER).outcome == "locked"


def test_unknown_user_is_rejected_as_fast_as_a_known_one(
    tmp_path: Path, real_cost_directory: UserDirectory, audit: AuditLog
) -> None:
    guard = SignInGuard(tmp_path / "sign-in.sqlite3", 1000, 15, audit)
    local = LocalIdentity(real_cost_directory)

    def cpu_seconds(name: str) -> float:
        # The thread's processor time: what a refusal costs, whatever else the machine runs.
        started = time.thread_time()
        assert guard.sign_in(local, name, "a-wrong-password").outcome == "wrong"
        return time.thread_time() - started

    known, unknown = [], []
    for round_ in range(7):  # interleaved, so that a change in load hits both alike
        known.append(cpu_seconds("alice"))
        unknown.append(cpu_seconds(f"nobody-{round_}"))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.7 <= ratio <= 1.4, (ratio, known, unknown)


def test_password_typed_as_username_is_not_stored(
    tmp_path: Path, directory: UserDirectory, audit: AuditLog
) -> None:
    typed = "Winter2026!alice"  # alice's password, typed into the username box
    guard = SignInGuard(tmp_path / "sign-in.sqlite3", 3, 15, audit)
    local = LocalIdentity(directory)
    for _ in range(4):
        guard.sign_in(local, typed, "alice")
    events = audit.events(None)
    assert [e.action for e in events] == ["login_locked"] + ["login_failed"] * 3
    assert {e.user for e in events} == {guard.unknown_name(typed)}
    assert guard.unknown_name(typed).startswith("unknown:") and len(events[0].user) == 24
    for stored in tmp_path.iterdir():
        assert typed.encode() not in stored.read_bytes(), stored.name
    # Known names are logged as they are, and the key is the data folder's own secret.
    guard.sign_in(local, "alice", "guess", OFFICE)
    assert audit.events(1)[0].user == "alice"
    key = sign_in_key_path(tmp_path / "sign-in.sqlite3")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    other = SignInGuard(tmp_path / "elsewhere" / "sign-in.sqlite3", 3, 15, audit)
    assert other.unknown_name(typed) != guard.unknown_name(typed)


TRUSTED = [ipaddress.ip_network("172.18.0.1"), ipaddress.ip_network("10.9.0.0/16")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # A client that talks to the UI directly cannot pick its address.
        ("192.0.2.10", ["203.0.113.99"], "192.0.2.10"),
        # Through the trusted proxy: the address the proxy appended.
        ("172.18.0.1", ["203.0.113.5"], "203.0.113.5"),
        # A client's own forged entries stand left of what the proxy appended.
        ("172.18.0.1", ["1.1.1.1, 203.0.113.5"], "203.0.113.5"),
        # Through two trusted proxies, the header repeated.
        ("172.18.0.1", ["203.0.113.5", "10.9.4.4"], "203.0.113.5"),
        # A proxy that forwarded no header, or nonsense: the proxy itself.
        ("172.18.0.1", [], "172.18.0.1"),
        ("172.18.0.1", ["not-an-address"], "172.18.0.1"),
        ("::1", [], "::1"),
        (None, ["203.0.113.5"], None),
    ],
)
def test_the_client_address_is_taken_from_trusted_proxies_only(
    peer: str | None, forwarded: list[str], client: str | None
) -> None:
    assert client_address(peer, forwarded, TRUSTED) == client
