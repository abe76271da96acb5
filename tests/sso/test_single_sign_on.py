"""Single sign-on against a real OpenID provider (oidc-provider on loopback): the sign-in,
the groups it gives, break-glass admins, and the provider's access tokens on the API."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from appliance.audit import build_audit
from appliance.core import Appliance
from appliance.errors import DirectoryUnavailable, ProviderError, Unauthorized
from appliance.root import Parts
from appliance.sso import OidcClient, OidcIdentity
from appliance.users import User, UserDirectory
from tests.conftest import free_port, make_settings, serving_api
from tests.sso.conftest import (
    ADMIN_GROUP,
    CLIENT_ID,
    DOCUMENTS,
    OTHER_RESOURCE,
    OpenIdProvider,
    provider_access_token,
    provider_tokens,
    running,
    sign_in_at_provider,
)

pytestmark = pytest.mark.integration

BREAK_GLASS = ("root-admin", "root-admin-password")
CLERK = ("clerk", "clerk-password")
QUESTION = "harbour"


@pytest.fixture(scope="module")
def local_users(sso_data: Path) -> None:
    users = UserDirectory(sso_data / "users.sqlite3", {})
    try:
        users.add(*BREAK_GLASS, ["it"], admin=True)
        users.add(*CLERK, ["finance"])
    finally:
        users.close()


@pytest.fixture
def appliance(
    openid_provider: OpenIdProvider, sso_data: Path, local_users: None
) -> Iterator[Appliance]:
    appliance = Appliance(Parts(openid_provider.settings(sso_data)))
    yield appliance
    appliance.close()


def single_sign_on(appliance: Appliance, login: str) -> User:
    url, key = appliance.start_single_sign_on()
    back = sign_in_at_provider(url, login)
    return appliance.finish_single_sign_on(
        back.query["code"], back.query["state"], "127.0.0.1", key
    )


def readable(appliance: Appliance, user: User) -> set[str]:
    """The documents (as named in DOCUMENTS) a search finds for `user`."""
    hits = appliance.search(appliance.actor_of(user, "ui"), QUESTION, k=10)
    return {name for name in DOCUMENTS for hit in hits if hit.chunk.path.endswith(name)}


def last_event(appliance: Appliance, action: str) -> dict[str, Any]:
    event = next(e for e in appliance.parts.audit.events() if e.action == action)
    return {"user": event.user, **event.detail}


def test_the_authorization_url_sends_pkce_state_and_nonce(appliance: Appliance) -> None:
    url, key = appliance.start_single_sign_on()
    assert len(key) >= 32 and key not in url  # the browser's key never travels to the provider
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43  # base64url of SHA-256, no padding
    assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
    assert set(query["scope"].split()) == {"openid", "profile", "groups"}
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert url.startswith(appliance.settings.identity.oidc.issuer)


def test_a_user_signs_in_with_the_groups_their_token_carries(appliance: Appliance) -> None:
    erika = single_sign_on(appliance, "erika")
    assert erika == User("erika", ("finance-team",), admin=False, share_groups=("finance",))
    assert readable(appliance, erika) == {"finance/budget-2027.md", "public/canteen.md"}
    login = last_event(appliance, "login")
    assert login["user"] == "erika" and login["via"] == "oidc"
    assert login["groups"] == ["finance-team"]
    assert appliance.parts.identity.lookup("erika") == erika


def test_another_group_reads_its_own_documents_only(appliance: Appliance) -> None:
    hanna = single_sign_on(appliance, "hanna")
    assert readable(appliance, hanna) == {"hr/salary-bands.md", "public/canteen.md"}


def test_a_token_without_a_groups_claim_reads_what_everyone_may(appliance: Appliance) -> None:
    max_ = single_sign_on(appliance, "max")
    assert max_.groups == () and max_.share_groups == () and not max_.admin
    assert readable(appliance, max_) == {"public/canteen.md"}


def test_a_member_of_an_admin_group_is_an_admin(appliance: Appliance) -> None:
    ines = single_sign_on(appliance, "ines")
    assert ines.admin and ines.groups == (ADMIN_GROUP,)


def test_a_replayed_state_is_refused_and_audited(appliance: Appliance) -> None:
    url, key = appliance.start_single_sign_on()
    back = sign_in_at_provider(url, "erika")
    code, state = back.query["code"], back.query["state"]
    appliance.finish_single_sign_on(code, state, "127.0.0.1", key)
    with pytest.raises(Unauthorized, match="unknown or already used"):
        appliance.finish_single_sign_on(code, state, "127.0.0.1", key)
    failed = last_event(appliance, "login_failed")
    assert failed["via"] == "oidc" and "already used" in failed["reason"]


def test_a_state_from_another_appliance_process_is_refused(
    appliance: Appliance, openid_provider: OpenIdProvider, sso_data: Path
) -> None:
    other = Appliance(Parts(openid_provider.settings(sso_data)))
    try:
        url, key = other.start_single_sign_on()
        back = sign_in_at_provider(url, "erika")
    finally:
        other.close()
    with pytest.raises(Unauthorized, match="unknown or already used"):
        appliance.finish_single_sign_on(back.query["code"], back.query["state"], None, key)


def test_a_sign_in_finished_in_another_browser_is_refused(appliance: Appliance) -> None:
    """A forged link: the forger signs in at the provider and sends the link back to the
    appliance to someone else, whose browser lacks the key of the forger's sign-in."""
    url, _ = appliance.start_single_sign_on()
    back = sign_in_at_provider(url, "hanna")
    with pytest.raises(Unauthorized, match="started in another browser"):
        appliance.finish_single_sign_on(back.query["code"], back.query["state"], None, "")
    failed = last_event(appliance, "login_failed")
    assert "another browser" in failed["reason"]


def test_a_sign_in_finished_after_ten_minutes_is_refused(
    openid_provider: OpenIdProvider, sso_data: Path
) -> None:
    settings = openid_provider.settings(sso_data)
    now = [time.time()]
    client = OidcClient(settings.identity.oidc, {}, clock=lambda: now[0])
    identity = OidcIdentity(client, UserDirectory(settings.users_path, {}), clock=lambda: now[0])
    url, key = identity.start_sign_in()
    back = sign_in_at_provider(url, "erika")
    now[0] += 601
    with pytest.raises(Unauthorized, match="longer than 10 minutes"):
        identity.finish_sign_in(back.query["code"], back.query["state"], key)


def test_only_local_admins_sign_in_with_a_password_and_it_is_audited_as_break_glass(
    appliance: Appliance,
) -> None:
    result = appliance.sign_in(*BREAK_GLASS, "127.0.0.1")
    assert result.user is not None and result.user.admin
    login = last_event(appliance, "login")
    assert login["user"] == BREAK_GLASS[0] and login["break_glass"] is True
    assert appliance.sign_in(*CLERK, "127.0.0.1").user is None
    assert appliance.parts.identity.lookup(CLERK[0]) is None


def test_single_sign_on_refuses_the_name_of_a_local_admin(appliance: Appliance) -> None:
    with pytest.raises(Unauthorized, match="local admin's name"):
        single_sign_on(appliance, BREAK_GLASS[0])
    assert appliance.parts.identity.lookup(BREAK_GLASS[0]) == User(
        BREAK_GLASS[0], ("it",), admin=True, break_glass=True
    )


def test_an_access_token_in_a_local_admins_name_is_refused(
    appliance: Appliance, openid_provider: OpenIdProvider
) -> None:
    token = provider_access_token(openid_provider, BREAK_GLASS[0])
    with pytest.raises(Unauthorized, match="local admin's name"):
        appliance.authenticate(token, "api")


class _DoctoredDiscovery(BaseHTTPRequestHandler):
    """An issuer whose discovery document puts its signing keys on another origin."""

    document: dict[str, Any] = {}

    def do_GET(self) -> None:  # noqa: N802 (the server's name for it)
        body = json.dumps(self.document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_discovery_document_pointing_the_keys_elsewhere_is_refused(
    openid_provider: OpenIdProvider, sso_data: Path
) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    real = httpx.get(
        f"{openid_provider.issuer}/.well-known/openid-configuration", trust_env=False
    ).json()
    _DoctoredDiscovery.document = {
        **real, "issuer": issuer, "token_endpoint": f"{issuer}/token",
        "jwks_uri": real["jwks_uri"],  # the real provider's: another origin than this issuer
    }  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", port), _DoctoredDiscovery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = openid_provider.settings(sso_data)
    oidc = settings.identity.oidc.model_copy(update={"issuer": issuer})
    try:
        client = OidcClient(oidc, {})
        with pytest.raises(ProviderError, match="jwks_uri on another origin"):
            client.discovery()
    finally:
        server.shutdown()
        server.server_close()


# -- the provider's access tokens on the API ---------------------------------------------------


@pytest.fixture(scope="module")
def api_url(openid_provider: OpenIdProvider, sso_data: Path, local_users: None) -> Iterator[str]:
    """`rag serve` signing API callers in through the provider (no LLM needed for search)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {
        "RAG_DATA_DIR": str(sso_data), "RAG_API__PORT": str(port),
        "RAG_API__REQUESTS_PER_MINUTE": "1000", **openid_provider.environment(),
    }  # fmt: skip
    with serving_api(env) as url:
        yield url


def api_search(api_url: str, token: str) -> httpx.Response:
    return httpx.post(
        api_url + "v1/search", json={"query": QUESTION, "k": 10},
        headers={"Authorization": f"Bearer {token}"}, timeout=120, trust_env=False,
    )  # fmt: skip


def found(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    paths = [hit["path"] for hit in response.json()["hits"]]
    return {name for name in DOCUMENTS for path in paths if path.endswith(name)}


def denials(sso_data: Path, since: int) -> list[str]:
    """The reasons of the API's refusals audited after the first `since` events."""
    events = build_audit(make_settings(sso_data)).events()
    return [e.detail["reason"] for e in events[: len(events) - since] if e.action == "api_denied"]


def audit_length(sso_data: Path) -> int:
    return len(build_audit(make_settings(sso_data)).events())


def test_the_api_takes_the_providers_access_token_and_returns_only_permitted_documents(
    api_url: str, openid_provider: OpenIdProvider
) -> None:
    erika = provider_access_token(openid_provider, "erika")
    assert found(api_search(api_url, erika)) == {"finance/budget-2027.md", "public/canteen.md"}
    max_ = provider_access_token(openid_provider, "max")
    assert found(api_search(api_url, max_)) == {"public/canteen.md"}


def test_the_api_refuses_a_token_for_another_audience_and_a_tampered_one(
    api_url: str, openid_provider: OpenIdProvider, sso_data: Path
) -> None:
    before = audit_length(sso_data)
    other = provider_access_token(openid_provider, "erika", OTHER_RESOURCE)
    assert api_search(api_url, other).status_code == 401
    header, payload, signature = provider_access_token(openid_provider, "max").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = ["hr"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert api_search(api_url, f"{header}.{forged}.{signature}").status_code == 401
    assert api_search(api_url, "not-a-token").status_code == 401
    reasons = denials(sso_data, before)
    assert any("aud" in reason for reason in reasons), reasons
    assert any("BadSignatureError" in reason for reason in reasons), reasons


def test_an_expired_access_token_is_refused(
    openid_provider: OpenIdProvider, sso_data: Path
) -> None:
    token = provider_access_token(openid_provider, "erika")
    settings = openid_provider.settings(sso_data)
    assert OidcClient(settings.identity.oidc, {}).access_token_claims(token)["groups"]
    an_hour_later = OidcClient(settings.identity.oidc, {}, clock=lambda: time.time() + 3600)
    with pytest.raises(Unauthorized, match="ExpiredTokenError"):
        an_hour_later.access_token_claims(token)


def test_an_id_token_is_no_access_token(openid_provider: OpenIdProvider, sso_data: Path) -> None:
    settings = openid_provider.settings(sso_data)
    client = OidcClient(settings.identity.oidc.model_copy(update={"audience": ""}), {})
    id_token = provider_tokens(openid_provider, "erika")["id_token"]
    with pytest.raises(Unauthorized, match="ID token is not an access token"):
        client.access_token_claims(id_token)


def test_break_glass_admins_sign_in_while_the_provider_is_unreachable(
    openid_provider: OpenIdProvider, sso_data: Path, local_users: None
) -> None:
    settings = openid_provider.settings(sso_data)
    gone = settings.identity.oidc.model_copy(update={"issuer": f"http://127.0.0.1:{free_port()}"})
    appliance = Appliance(
        Parts(settings.model_copy(update={"identity": settings.identity.model_copy(
            update={"oidc": gone}
        )}))
    )  # fmt: skip
    token = provider_access_token(openid_provider, "erika")  # a good token, keys out of reach
    try:
        with pytest.raises(ProviderError, match="could not be read"):
            appliance.start_single_sign_on()
        with pytest.raises(DirectoryUnavailable, match="OpenID provider"):
            appliance.authenticate(token, "api")
        result = appliance.sign_in(*BREAK_GLASS, "127.0.0.1")
        assert result.user is not None and result.user.name == BREAK_GLASS[0]
    finally:
        appliance.close()


def test_keys_the_provider_rotated_to_are_fetched_when_a_token_names_one(
    tmp_path: Path, openid_provider: OpenIdProvider, sso_data: Path
) -> None:
    provider = replace(
        openid_provider, issuer=f"http://127.0.0.1:{free_port()}", log=tmp_path / "provider.log"
    )
    now = [time.time()]
    client = OidcClient(provider.settings(sso_data).identity.oidc, {}, clock=lambda: now[0])
    with running(provider):
        assert client.access_token_claims(provider_access_token(provider, "erika"))
    with running(provider):  # the same issuer, restarted with new signing keys
        rotated = provider_access_token(provider, "erika")
        with pytest.raises(Unauthorized, match="BadSignatureError|kid|key"):
            client.access_token_claims(rotated)  # the keys were fetched a moment ago
        now[0] += 11
        assert client.access_token_claims(rotated)["preferred_username"] == "erika"
