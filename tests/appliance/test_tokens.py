"""API tokens on a real SQLite file: the secret is handed out once and kept only as a hash;
tokens expire, are revoked, are listed without secrets, and verify from many threads."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from appliance.errors import BadRequest, InvalidToken, Unauthorized, UnknownToken
from appliance.tokens import (
    LAST_USED_RESOLUTION,
    MAX_NAME_CHARS,
    SECRET_PREFIX,
    TokenStore,
    secret_hash,
)
from tests.appliance.test_identity import Clock

DAY = 86400.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> TokenStore:
    return TokenStore(tmp_path / "tokens.sqlite3", clock=clock)


def refusal(store: TokenStore, secret: str) -> str:
    with pytest.raises(Unauthorized) as refused:
        store.verify(secret)
    return str(refused.value)


def test_a_new_token_verifies_as_its_user(store: TokenStore) -> None:
    token, secret = store.create("alice", expires_days=30, name="laptop script")

    verified = store.verify(secret)

    assert secret.startswith(SECRET_PREFIX) and len(secret) == len(SECRET_PREFIX) + 43
    assert (verified.id, verified.user, verified.name) == (token.id, "alice", "laptop script")
    assert len(token.id) == 12 and token.id not in secret


def test_the_database_file_holds_the_secrets_hash_and_never_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "tokens.sqlite3"
    store = TokenStore(path)
    made = [store.create(user, None) for user in ("alice", "bob", "alice")]
    store.close()

    stored = b"".join(file.read_bytes() for file in tmp_path.glob("tokens.sqlite3*"))

    for token, secret in made:
        assert secret_hash(secret).encode() in stored and token.id.encode() in stored
        assert secret.encode() not in stored
        assert secret.removeprefix(SECRET_PREFIX).encode() not in stored
    reopened = TokenStore(path)
    assert [reopened.verify(secret).id for _, secret in made] == [t.id for t, _ in made]


def test_a_token_expires_the_given_number_of_days_after_it_was_made(
    store: TokenStore, clock: Clock
) -> None:
    _, secret = store.create("alice", expires_days=7)
    _, lasting = store.create("alice", expires_days=None)

    clock.now += 7 * DAY - 1
    assert store.verify(secret).user == "alice"
    clock.now += 1
    assert refusal(store, secret) == "expired token"
    clock.now += 3650 * DAY
    assert store.verify(lasting).expires is None


def test_a_revoked_token_is_refused_and_revoking_it_again_keeps_the_first_time(
    store: TokenStore, clock: Clock
) -> None:
    token, secret = store.create("alice", expires_days=30)
    _, other = store.create("alice", expires_days=30)
    revoked_at = clock.now

    first = store.revoke(token.id)
    clock.now += 90
    again = store.revoke(token.id)

    assert first.revoked == again.revoked == revoked_at
    assert refusal(store, secret) == "revoked token"
    clock.now += 30 * DAY
    assert refusal(store, secret) == "revoked token"  # said before that it also expired
    assert store.list("alice")[1].revoked == revoked_at
    assert refusal(store, other) == "expired token"


def test_a_secret_the_store_never_handed_out_is_unknown(store: TokenStore) -> None:
    _, secret = store.create("alice", expires_days=None)
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    for presented in (tampered, SECRET_PREFIX, "", secret[len(SECRET_PREFIX) :],
                      secret + "x" * 500, secret_hash(secret)):  # fmt: skip
        assert refusal(store, presented) == "unknown token", presented


def test_tokens_are_listed_newest_first_per_user_without_secrets(
    store: TokenStore, clock: Clock
) -> None:
    old, old_secret = store.create("alice", expires_days=30, name="  nightly \n export  ")
    clock.now += 60
    other, other_secret = store.create("bob", expires_days=None)
    clock.now += 60
    new, new_secret = store.create("alice", expires_days=None)
    store.verify(old_secret)

    assert [t.id for t in store.list("alice")] == [new.id, old.id]
    assert [t.id for t in store.list()] == [new.id, other.id, old.id]
    assert store.list("carol") == []
    listed = store.list("alice")[1].as_json()
    assert listed == {
        "id": old.id,
        "user": "alice",
        "name": "nightly export",
        "created": "2027-01-15T08:00:00+00:00",
        "expires": "2027-02-14T08:00:00+00:00",
        "revoked": None,
        "last_used": "2027-01-15T08:02:00+00:00",
    }
    shown = json.dumps([t.as_json() for t in store.list()])
    for secret in (old_secret, other_secret, new_secret):
        assert secret not in shown and secret_hash(secret) not in shown


def test_revoking_an_id_no_token_has_is_a_bad_request_naming_it(store: TokenStore) -> None:
    store.create("alice", expires_days=None)

    with pytest.raises(UnknownToken, match="no API token has the id 'feedc0ffee00'") as raised:
        store.revoke("feedc0ffee00")

    assert isinstance(raised.value, BadRequest)


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_a_lifetime_out_of_range_is_a_bad_request_and_makes_no_token(
    store: TokenStore, days: int
) -> None:
    with pytest.raises(InvalidToken, match="lifetime must be 1 to 3650 days") as raised:
        store.create("alice", expires_days=days)

    assert isinstance(raised.value, BadRequest)
    assert store.list() == []


def test_a_name_is_kept_on_one_line_up_to_its_length_limit(store: TokenStore) -> None:
    longest = "n" * MAX_NAME_CHARS

    assert store.create("alice", None, f" {longest}\t")[0].name == longest
    with pytest.raises(InvalidToken, match="at most 100 characters"):
        store.create("alice", None, longest + "n")
    assert len(store.list()) == 1


def test_eight_threads_verify_tokens_at_once(store: TokenStore, clock: Clock) -> None:
    made = {user: store.create(user, expires_days=1)[1] for user in ("alice", "bob")}
    start = threading.Barrier(8)
    verified: list[str] = []
    failures: list[BaseException] = []

    def verify_many(user: str) -> None:
        start.wait()
        try:
            for _ in range(50):
                verified.append(store.verify(made[user]).user)
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=verify_many, args=(u,)) for u in ["alice", "bob"] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert sorted(verified) == ["alice"] * 200 + ["bob"] * 200
    assert {t.user: t.last_used for t in store.list()} == {"alice": clock.now, "bob": clock.now}


def test_last_used_is_recorded_at_most_once_a_minute(store: TokenStore, clock: Clock) -> None:
    token, secret = store.create("alice", expires_days=None)
    assert token.last_used is None
    first_use = clock.now

    assert store.verify(secret).last_used == first_use
    clock.now += LAST_USED_RESOLUTION - 1
    assert store.verify(secret).last_used == first_use
    assert store.list()[0].last_used == first_use
    clock.now += 1
    assert store.verify(secret).last_used == first_use + LAST_USED_RESOLUTION
    assert store.list()[0].last_used == first_use + LAST_USED_RESOLUTION


def test_removing_a_user_deletes_only_their_tokens(store: TokenStore) -> None:
    _, first = store.create("alice", expires_days=None)
    _, second = store.create("alice", expires_days=30)
    _, bobs = store.create("bob", expires_days=None)

    assert store.remove_user("alice") == 2

    assert refusal(store, first) == refusal(store, second) == "unknown token"
    assert store.verify(bobs).user == "bob"
    assert store.remove_user("alice") == 0
