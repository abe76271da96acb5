"""Signing in with the organisation's directory: the session's real Samba Active Directory,
reached over LDAPS and StartTLS with ldap3, with the domain's own account states, nested
groups, a directory that hangs, and the break-glass admins of the appliance's own directory;
through the application layer, the `rag` command and the UI (Streamlit's AppTest)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from ldap3 import MODIFY_REPLACE, Connection, Server, Tls
from streamlit.testing.v1 import AppTest

from appliance.actor import Actor
from appliance.core import Appliance
from appliance.directory import LdapIdentity
from appliance.errors import DirectoryUnavailable, UnknownUser
from appliance.identity import IdentityProvider, session_change
from appliance.root import Parts
from appliance.users import User, UserDirectory
from retrieval.build import build_store
from retrieval.models import Chunk, chunk_id, document_id
from settings import LdapSettings, Settings
from tests.conftest import RAG, make_settings
from tests.directory.samba_domain import (
    ADMIN,
    ADMIN_PASSWORD,
    BASE_DN,
    SambaDomain,
    make_certificates,
)
from tests.ui.test_app import APP, signed_in

# This module's accounts in the session's domain all start with `lg-`.
PASSWORD = "Lg-Passw0rd-1!"
SERVICE, SERVICE_PASSWORD = "lg-svc", "Lg-Svc-Passw0rd-1!"
TEAM, DEPARTMENT, ADMINS, BOARD = "lg-team", "lg-dept", "lg-admins", "lg-board"
ERIKA, ADA, MOVER = "lg-erika", "lg-ada", "lg-mover"
LOCKED, MUST_CHANGE, EXPIRED, DISABLED = "lg-locked", "lg-change", "lg-expired", "lg-off"
BREAK_GLASS, LOCAL_USER, LOCAL_PASSWORD = "lg-root", "lg-local", "local-passw0rd"
OFFICE = "10.20.30.40"
TIMEOUT = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def domain(samba_domain: SambaDomain) -> SambaDomain:
    """The session's domain with this module's accounts: ERIKA in TEAM, TEAM in DEPARTMENT
    (so ERIKA is in DEPARTMENT through TEAM), ADA in ADMINS, MOVER in TEAM, and one account
    for each state the directory refuses."""
    samba_domain.add_user(SERVICE, SERVICE_PASSWORD)
    for group in (TEAM, DEPARTMENT, ADMINS, BOARD):
        samba_domain.add_group(group)
    for user in (ERIKA, ADA, MOVER, LOCKED, MUST_CHANGE, EXPIRED, DISABLED):
        samba_domain.add_user(user, PASSWORD)
    samba_domain.add_members(TEAM, ERIKA, MOVER)
    samba_domain.add_members(DEPARTMENT, TEAM)
    samba_domain.add_members(ADMINS, ADA)
    samba_domain.tool("user", "disable", DISABLED)
    samba_domain.tool("user", "setexpiry", EXPIRED, "--days=0")
    as_admin(samba_domain).modify(
        f"CN={MUST_CHANGE},CN=Users,{BASE_DN}", {"pwdLastSet": [(MODIFY_REPLACE, ["0"])]}
    )
    return samba_domain


def as_admin(domain: SambaDomain) -> Connection:
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(domain.ca_file))
    server = Server(domain.address, port=636, use_ssl=True, tls=tls)
    return Connection(
        server, f"CN={ADMIN},CN=Users,{BASE_DN}", ADMIN_PASSWORD, auto_bind=True,
        raise_exceptions=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def service_password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ldap-secret") / "bind-password"
    path.write_text(SERVICE_PASSWORD + "\n")
    path.chmod(0o600)
    return path


def ldap_values(
    domain: SambaDomain, password_file: Path, url: str | None = None, **ldap: object
) -> dict[str, object]:
    """`identity.ldap` of an appliance that signs users in with the domain."""
    return {
        "url": url or f"ldaps://{domain.address}:636",
        "ca_file": domain.ca_file,
        "base_dn": BASE_DN,
        "bind_dn": f"CN={SERVICE},CN=Users,{BASE_DN}",
        "bind_password_file": password_file,
        "admin_groups": [ADMINS],
        "timeout_seconds": TIMEOUT,
        **ldap,
    }


GROUP_MAP = {DEPARTMENT: ["finance"]}


def ldap_settings(
    data_dir: Path,
    domain: SambaDomain,
    password_file: Path,
    url: str | None = None,
    max_failed_sign_ins: int = 5,
    **ldap: object,
) -> Settings:
    return make_settings(
        data_dir,
        identity={"provider": "ldap", "ldap": ldap_values(domain, password_file, url, **ldap)},
        access={"group_map": GROUP_MAP},
        ui={"max_failed_sign_ins": max_failed_sign_ins},
    )


def ldap_environment(domain: SambaDomain, password_file: Path) -> dict[str, str]:
    """The same settings as the `rag` command reads them."""
    values = ldap_values(domain, password_file)
    return {
        "RAG_IDENTITY__PROVIDER": "ldap",
        "RAG_ACCESS__GROUP_MAP": json.dumps(GROUP_MAP),
        **{
            f"RAG_IDENTITY__LDAP__{key.upper()}": json.dumps(value)
            if isinstance(value, list) else str(value)
            for key, value in values.items()
        },
    }  # fmt: skip


@pytest.fixture
def appliance(
    domain: SambaDomain, service_password_file: Path, tmp_path: Path
) -> Iterator[Appliance]:
    built = Appliance(Parts(ldap_settings(tmp_path / "data", domain, service_password_file)))
    yield built
    built.close()


def events(appliance: Appliance, action: str) -> list[Any]:
    return [e for e in reversed(appliance.parts.audit.events()) if e.action == action]


# -- signing in --------------------------------------------------------------------------------


def test_a_user_signs_in_over_ldaps_with_nested_groups_their_sids_and_mapped_share_groups(
    domain: SambaDomain, appliance: Appliance
) -> None:
    started = time.monotonic()
    result = appliance.sign_in(ERIKA.upper(), PASSWORD, OFFICE)
    took = time.monotonic() - started
    user = result.user
    assert result.outcome == "ok" and user is not None
    assert user.name == ERIKA  # as the directory spells it
    assert {TEAM, DEPARTMENT, "Domain Users"} <= set(user.groups) and ADMINS not in user.groups
    assert user.admin is False and user.share_groups == ("finance",)
    assert user.sids[0] == domain.user_sid(ERIKA)
    held = {domain.group_sid(TEAM), domain.group_sid(DEPARTMENT)}
    assert held <= set(user.sids) and domain.group_sid(BOARD) not in user.sids
    assert {f"sid:{sid}" for sid in held} | {f"group:{DEPARTMENT}", "group:finance"} <= (
        user.principals
    )
    (login,) = events(appliance, "login")
    assert login.user == ERIKA and DEPARTMENT in login.detail["groups"]
    assert "break_glass" not in login.detail
    assert took < 2.0, f"a sign-in against the domain took {took:.2f} s"


def test_a_member_of_an_admin_group_is_an_admin(appliance: Appliance) -> None:
    result = appliance.sign_in(ADA, PASSWORD, OFFICE)
    assert result.user is not None and result.user.admin is True
    assert ADMINS in result.user.groups


def test_a_user_signs_in_over_starttls_as_over_ldaps(
    domain: SambaDomain, service_password_file: Path, tmp_path: Path
) -> None:
    url = f"ldap://{domain.address}:389"
    starttls = Appliance(Parts(ldap_settings(tmp_path, domain, service_password_file, url)))
    result = starttls.sign_in(ERIKA, PASSWORD, OFFICE)
    assert result.outcome == "ok" and result.user is not None
    assert DEPARTMENT in result.user.groups
    starttls.close()


def test_a_wrong_password_and_an_unknown_name_are_both_wrong_and_told_apart_nowhere(
    appliance: Appliance,
) -> None:
    wrong = appliance.sign_in(ERIKA, "not-her-password", OFFICE)
    unknown = appliance.sign_in("lg-nobody", PASSWORD, OFFICE)
    empty = appliance.sign_in(ERIKA, "", OFFICE)  # an anonymous bind, if it were tried
    assert wrong.outcome == unknown.outcome == empty.outcome == "wrong"
    assert wrong.message_id == unknown.message_id == "wrong_password"
    failed = events(appliance, "login_failed")
    assert [e.user for e in failed][0] == ERIKA and failed[1].user.startswith("unknown:")
    assert all("reason" not in e.detail for e in failed)


@pytest.mark.parametrize(
    ("account", "outcome"),
    [
        (MUST_CHANGE, "password_must_change"),
        (EXPIRED, "account_expired"),
        (DISABLED, "account_disabled"),
    ],
)
def test_a_right_password_of_an_account_the_directory_refuses_says_why(
    appliance: Appliance, account: str, outcome: str
) -> None:
    result = appliance.sign_in(account, PASSWORD, OFFICE)
    assert (result.outcome, result.message_id, result.user) == (outcome, outcome, None)
    (failed,) = events(appliance, "login_failed")
    assert (failed.user, failed.detail["reason"]) == (account, outcome)
    assert appliance.sign_in(account, "not-the-password", OFFICE).outcome == "wrong"


def test_an_account_the_directory_locked_says_so_even_with_the_right_password(
    appliance: Appliance,
) -> None:
    # The domain locks an account after 3 wrong passwords (for a minute).
    outcomes = [appliance.sign_in(LOCKED, f"wrong-{n}", f"10.0.0.{n}").outcome for n in range(3)]
    assert outcomes == ["wrong"] * 3
    result = appliance.sign_in(LOCKED, PASSWORD, OFFICE)
    assert (result.outcome, result.message_id) == ("account_locked", "account_locked")
    assert events(appliance, "login_failed")[-1].detail["reason"] == "account_locked"


def test_without_token_groups_nested_groups_come_through_member_of(
    domain: SambaDomain, service_password_file: Path, tmp_path: Path
) -> None:
    settings = LdapSettings.model_validate(ldap_values(domain, service_password_file))
    local = UserDirectory(tmp_path / "users.sqlite3", {})
    by_member_of = LdapIdentity(settings, local, GROUP_MAP, token_groups=False)
    user = by_member_of.authenticate(ERIKA, PASSWORD)
    assert user is not None and {TEAM, DEPARTMENT} <= set(user.groups)
    assert user.sids[0] == domain.user_sid(ERIKA)
    assert domain.group_sid(DEPARTMENT) in user.sids and user.share_groups == ("finance",)
    local.close()


def test_a_disabled_or_expired_account_is_no_user_for_lookups(appliance: Appliance) -> None:
    identity = appliance.parts.identity
    assert identity.lookup(DISABLED) is None and identity.lookup(EXPIRED) is None
    assert identity.lookup(ERIKA) is not None
    with pytest.raises(UnknownUser, match="directory has no enabled account"):
        appliance.actor(DISABLED)


# -- the directory down --------------------------------------------------------------------


def test_with_the_directory_down_sign_in_fails_closed_quickly_and_break_glass_admins_get_in(
    domain: SambaDomain, service_password_file: Path, tmp_path: Path
) -> None:
    # An address gets 2 failures: the directory being down must not use them up.
    settings = ldap_settings(tmp_path / "data", domain, service_password_file,
                             max_failed_sign_ins=2)  # fmt: skip
    appliance = Appliance(Parts(settings))
    appliance.parts.users.add(BREAK_GLASS, LOCAL_PASSWORD, [], admin=True)
    appliance.parts.users.add(LOCAL_USER, LOCAL_PASSWORD, ["staff"])
    assert appliance.sign_in(LOCAL_USER, LOCAL_PASSWORD, OFFICE).outcome == "wrong"
    domain.pause()
    try:
        started = time.monotonic()
        down = appliance.sign_in(ERIKA, PASSWORD, OFFICE)
        took = time.monotonic() - started
        # More than the address's 2 failures: none of them counts.
        again = [appliance.sign_in(ERIKA, PASSWORD, OFFICE).outcome for _ in range(2)]
        rescue = appliance.sign_in(BREAK_GLASS, LOCAL_PASSWORD, OFFICE)
        with pytest.raises(DirectoryUnavailable, match="no directory server answered"):
            appliance.actor(ERIKA)
    finally:
        domain.resume()
    assert (down.outcome, down.message_id) == ("unavailable", "directory_unavailable")
    assert again == ["unavailable"] * 2
    assert took < TIMEOUT + 1.0, f"refused after {took:.2f} s"
    assert rescue.outcome == "ok" and rescue.user is not None
    assert rescue.user.admin and rescue.user.break_glass
    failed = [e for e in events(appliance, "login_failed") if "reason" in e.detail]
    assert len(failed) == 3
    assert {e.detail["reason"] for e in failed} == {"directory_unavailable"}
    assert "timed out" in failed[0].detail["error"]
    (login,) = events(appliance, "login")
    assert (login.user, login.detail["break_glass"]) == (BREAK_GLASS, True)
    assert appliance.sign_in(ERIKA, PASSWORD, OFFICE).outcome == "ok"
    appliance.close()


class DirectoryFailsAfterLookup:
    """The domain's provider, with the domain hanging from just after the sign-in's lookup to
    just after its password check (a fault injected between the two)."""

    def __init__(self, inner: IdentityProvider, domain: SambaDomain) -> None:
        self.inner, self.domain = inner, domain
        self.refresh_seconds = inner.refresh_seconds

    def lookup(self, name: str) -> User | None:
        found = self.inner.lookup(name)
        self.domain.pause()
        return found

    def authenticate(self, name: str, password: str) -> User | None:
        try:
            return self.inner.authenticate(name, password)
        finally:
            self.domain.resume()


def test_a_directory_that_fails_during_the_password_check_counts_no_failure(
    domain: SambaDomain, service_password_file: Path, tmp_path: Path
) -> None:
    settings = ldap_settings(tmp_path / "data", domain, service_password_file,
                             max_failed_sign_ins=1)  # fmt: skip
    appliance = Appliance(Parts(settings))
    failing = DirectoryFailsAfterLookup(appliance.parts.identity, domain)
    guard = appliance.parts.sign_in_guard
    assert guard.sign_in(failing, ERIKA, PASSWORD, OFFICE).outcome == "unavailable"
    # One failure would have made the address wait: there was none.
    assert guard.sign_in(appliance.parts.identity, ERIKA, PASSWORD, OFFICE).outcome == "ok"
    (failed,) = events(appliance, "login_failed")
    assert (failed.user, failed.detail["reason"]) == (ERIKA, "directory_unavailable")
    appliance.close()


def test_the_directory_is_unavailable_when_its_certificate_is_not_the_organisations(
    domain: SambaDomain, service_password_file: Path, tmp_path: Path
) -> None:
    other_ca = make_certificates(tmp_path / "other-ca", domain.address) / "ca.pem"
    settings = ldap_settings(tmp_path / "data", domain, service_password_file,
                             ca_file=other_ca)  # fmt: skip
    appliance = Appliance(Parts(settings))
    assert appliance.sign_in(ERIKA, PASSWORD, OFFICE).outcome == "unavailable"
    (failed,) = events(appliance, "login_failed")
    assert "certificate verify failed" in failed.detail["error"]
    appliance.close()


def test_a_refused_service_account_makes_the_directory_unavailable_and_says_what_to_fix(
    domain: SambaDomain, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-service-password\n")
    wrong.chmod(0o600)
    appliance = Appliance(Parts(ldap_settings(tmp_path / "data", domain, wrong)))
    assert appliance.sign_in(ERIKA, PASSWORD, OFFICE).outcome == "unavailable"
    (failed,) = events(appliance, "login_failed")
    assert "refused the service account" in failed.detail["error"]
    appliance.close()


# -- groups that change ----------------------------------------------------------------------


def test_a_group_change_reaches_the_next_sign_in_open_sessions_and_tokens_after_refresh(
    domain: SambaDomain, service_password_file: Path, tmp_path: Path
) -> None:
    settings = ldap_settings(tmp_path / "data", domain, service_password_file,
                             refresh_seconds=60)  # fmt: skip
    clock = Clock()
    appliance = Appliance(Parts(settings), clock=clock)
    signed_in = appliance.sign_in(MOVER, PASSWORD, OFFICE).user
    assert signed_in is not None and DEPARTMENT in signed_in.groups
    token, secret = appliance.create_token(Actor.operator(), MOVER.upper())
    assert token.user == MOVER
    assert f"group:{DEPARTMENT}" in appliance.authenticate(secret, "api").scope.principals

    domain.remove_members(TEAM, MOVER)
    try:
        # The UI asks once `refresh_seconds` have passed: the session ends.
        assert appliance.parts.identity.refresh_seconds == 60
        assert session_change(appliance.parts.identity, signed_in) == "changed"
        clock.now += 59
        assert f"group:{DEPARTMENT}" in appliance.authenticate(secret, "api").scope.principals
        clock.now += 2
        after = appliance.authenticate(secret, "api").scope.principals
        assert f"group:{DEPARTMENT}" not in after
        assert f"sid:{domain.group_sid(DEPARTMENT)}" not in after
        again = appliance.sign_in(MOVER, PASSWORD, OFFICE).user
        assert again is not None and DEPARTMENT not in again.groups
    finally:
        domain.add_members(TEAM, MOVER)
    appliance.close()


def test_a_token_of_a_directory_user_fails_closed_once_due_while_the_directory_is_down(
    domain: SambaDomain, service_password_file: Path, tmp_path: Path
) -> None:
    settings = ldap_settings(tmp_path / "data", domain, service_password_file,
                             refresh_seconds=60)  # fmt: skip
    clock = Clock()
    appliance = Appliance(Parts(settings), clock=clock)
    _, secret = appliance.create_token(Actor.operator(), ERIKA)
    assert appliance.authenticate(secret, "api").name == ERIKA
    domain.pause()
    try:
        clock.now += 59  # the user read last still stands
        assert appliance.authenticate(secret, "api").name == ERIKA
        clock.now += 2
        with pytest.raises(DirectoryUnavailable):
            appliance.authenticate(secret, "api")
    finally:
        domain.resume()
    appliance.close()


def test_the_api_answers_503_to_a_token_due_while_the_directory_is_down(
    domain: SambaDomain, service_password_file: Path, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from ops.api.app import create_app

    settings = ldap_settings(tmp_path / "data", domain, service_password_file,
                             refresh_seconds=0)  # fmt: skip
    appliance = Appliance(Parts(settings))
    _, secret = appliance.create_token(Actor.operator(), ERIKA)
    bearer = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(appliance)) as client:
        assert client.get("/v1/models", headers=bearer).status_code == 200
        domain.pause()
        try:
            down = client.get("/v1/models", headers=bearer)
        finally:
            domain.resume()
        assert client.get("/v1/models", headers=bearer).status_code == 200
    assert (down.status_code, down.headers["Retry-After"]) == (503, "30")
    assert "directory cannot be reached" in down.json()["error"]["message"]
    (denied,) = events(appliance, "api_denied")
    assert denied.detail["reason"].startswith("directory unavailable: no directory server")


# -- the command line ------------------------------------------------------------------------


def indexed_for_directory_groups(settings: Settings, embedder: Any, domain: SambaDomain) -> None:
    """Two passages: one readable by the department's SID (as an NTFS ACL gives it), one by a
    group nobody here is in."""
    store = build_store(settings)
    store.ensure_collection(embedder.dimension)
    chunks = []
    for path, text, reader in (
        ("/shares/dept/budget.md", "The department budget for 2027 is 12 million euros.",
         f"sid:{domain.group_sid(DEPARTMENT)}"),
        ("/shares/board/budget.md", "The board budget for 2027 is 99 million euros.",
         f"group:{BOARD}"),
    ):  # fmt: skip
        doc = document_id(path)
        chunks.append(Chunk(id=chunk_id(doc, 0), doc_id=doc, ordinal=0, text=text, path=path,
                            content_sha256="0" * 64, acl=frozenset({reader}),
                            mtime=1_700_000_000.0))  # fmt: skip
    store.upsert(chunks, embedder.embed_documents([c.embedding_text() for c in chunks]))
    store.close()


def rag(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RAG), *args], env=environment, capture_output=True, text=True, timeout=600
    )


def test_rag_search_as_a_directory_user_reads_what_their_directory_groups_may_read(
    domain: SambaDomain, service_password_file: Path, tmp_path: Path, embedder: Any
) -> None:
    settings = make_settings(tmp_path / "data")
    indexed_for_directory_groups(settings, embedder, domain)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RAG_")}
    environment["RAG_DATA_DIR"] = str(settings.data_dir)
    environment.update(ldap_environment(domain, service_password_file))
    query = ("search", "budget for 2027", "--json")

    as_operator = json.loads(rag(environment, *query).stdout)["hits"]
    found = rag(environment, *query, "--user", ERIKA)
    assert found.returncode == 0, found.stderr
    assert {hit["path"] for hit in as_operator} == {"/shares/dept/budget.md",
                                                     "/shares/board/budget.md"}  # fmt: skip
    assert [hit["path"] for hit in json.loads(found.stdout)["hits"]] == ["/shares/dept/budget.md"]

    created = rag(environment, "tokens", "create", ERIKA, "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["user"] == ERIKA

    domain.pause()
    try:
        down = rag(environment, *query, "--user", ERIKA)
    finally:
        domain.resume()
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert "no directory server answered" in json.loads(down.stdout)["error"]


def test_user_json_names_sids_only_for_directory_users() -> None:
    local = User("alice", ("finance",), False)
    directory = User("erika", ("team",), False, sids=("S-1-5-21-1-2-3-1104",))
    assert local.as_json() == {"user": "alice", "groups": ["finance"], "admin": False}
    assert directory.as_json()["sids"] == ["S-1-5-21-1-2-3-1104"]
    assert "sid:S-1-5-21-1-2-3-1104" in directory.principals
    assert local != User("alice", ("finance",), False, break_glass=True)


# -- the UI ----------------------------------------------------------------------------------


DIRECTORY_DOWN = (
    "The organisation's directory cannot be reached, so nobody can sign in right now. Try "
    "again in a few minutes; if it goes on, tell the IT service desk."
)


@pytest.fixture
def ldap_app(
    ingested: Settings,
    domain: SambaDomain,
    service_password_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[None]:
    """The UI over the ingested sample share, signing users in with the domain."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("index", "ledger.sqlite3"):
        (data / name).symlink_to(ingested.data_dir / name)
    monkeypatch.setenv("RAG_DATA_DIR", str(data))
    for key, value in ldap_environment(domain, service_password_file).items():
        monkeypatch.setenv(key, value)
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def test_the_form_says_when_the_directory_wants_a_new_password(ldap_app: None) -> None:
    at = signed_in(AppTest.from_file(APP), MUST_CHANGE, PASSWORD)
    assert [e.value for e in at.error] == [
        "You must change your password before you first sign in: change it the usual way, "
        "then sign in."
    ]
    assert len(at.chat_input) == 0


def test_an_open_session_waits_while_the_directory_is_down_and_goes_on_after(
    ldap_app: None, domain: SambaDomain
) -> None:
    at = signed_in(AppTest.from_file(APP), ERIKA, PASSWORD)
    assert len(at.chat_input) == 1 and at.session_state["user"].name == ERIKA
    at.session_state["user_read_at"] = 0.0  # the user is due to be read again
    domain.pause()
    try:
        at.run(timeout=60)
    finally:
        domain.resume()
    assert [e.value for e in at.error] == [DIRECTORY_DOWN]
    assert len(at.chat_input) == 0 and at.session_state["user"].name == ERIKA
    at.run(timeout=60)
    assert len(at.chat_input) == 1 and not at.error


def test_a_service_account_that_may_not_read_token_groups_fails_closed(
    domain: SambaDomain,
    service_password_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Active Directory always lists the primary group: an empty tokenGroups is a service
    account without the right to read it (injected), and groups it would miss would miss
    their denies too."""
    appliance = Appliance(Parts(ldap_settings(tmp_path / "data", domain, service_password_file)))
    identity = appliance.parts.identity
    search = identity._search  # type: ignore[attr-defined]

    def without_token_groups(
        service: Any, base: str, query: str, scope: str, attributes: list[str]
    ) -> list[tuple[str, Any]]:
        found = search(service, base, query, scope, attributes)
        if attributes == ["tokenGroups"]:
            return [(dn, {"tokenGroups": []}) for dn, _ in found]
        return found  # fmt: skip

    monkeypatch.setattr(identity, "_search", without_token_groups)
    assert appliance.sign_in(ERIKA, PASSWORD, OFFICE).outcome == "unavailable"
    (failed,) = events(appliance, "login_failed")
    assert "tokenGroups" in failed.detail["error"]
    appliance.close()
