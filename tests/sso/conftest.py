"""A real OpenID provider for the single sign-on tests, and how a person signs in at it.

`openid_provider` runs `tests/sso/provider/provider.mjs` (the npm package oidc-provider, which
`make setup` installs there) on a free loopback port for the session: one confidential client
whose redirect URI is the UI's address (`ui_port`), the appliance's API as a resource whose
access tokens are JWTs for the audience `rag-api`, another resource for `other-api`, and four
accounts: erika (group finance-team), hanna (group hr), max (no groups claim at all),
ines (group rag-admins) and root-admin (the name of the tests' local admin). Its login form
takes any password.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from settings import PROJECT_ROOT, Settings
from tests.conftest import free_port, make_settings

PROVIDER_DIR = PROJECT_ROOT / "tests" / "sso" / "provider"
CLIENT_ID = "rag-appliance"
API_RESOURCE = "urn:rag:api"
API_AUDIENCE = "rag-api"
OTHER_RESOURCE = "urn:other:api"
OTHER_AUDIENCE = "other-api"
ADMIN_GROUP = "rag-admins"
ACCOUNTS: dict[str, dict[str, Any]] = {
    "erika": {"preferred_username": "erika", "groups": ["finance-team"]},
    "hanna": {"preferred_username": "hanna", "groups": ["hr"]},
    "max": {"preferred_username": "max"},
    "ines": {"preferred_username": "ines", "groups": [ADMIN_GROUP]},
    "root-admin": {"preferred_username": "root-admin", "groups": ["it"]},  # a local admin's name
}
# What access.group_map makes of the directory groups: finance-team holds the share group finance.
GROUP_MAP = {"finance-team": ["finance"]}
STARTUP_SECONDS = 30.0


@dataclass(frozen=True)
class OpenIdProvider:
    issuer: str
    client_secret_file: Path
    redirect_url: str
    ui_port: int
    log: Path

    @property
    def client_secret(self) -> str:
        return self.client_secret_file.read_text().strip()

    def settings(self, data_dir: Path, **overrides: Any) -> Settings:
        """Settings that sign users in through this provider."""
        identity = {
            "provider": "oidc",
            "oidc": {
                "issuer": self.issuer, "client_id": CLIENT_ID,
                "client_secret_file": self.client_secret_file, "redirect_url": self.redirect_url,
                "audience": API_AUDIENCE, "admin_groups": [ADMIN_GROUP],
            },
        }  # fmt: skip
        return make_settings(
            data_dir, identity=identity, access={"group_map": GROUP_MAP}, **overrides
        )

    def environment(self) -> dict[str, str]:
        """The same settings for a process of the appliance's own (`rag serve`, the UI)."""
        return {
            "RAG_IDENTITY__PROVIDER": "oidc", "RAG_IDENTITY__OIDC__ISSUER": self.issuer,
            "RAG_IDENTITY__OIDC__CLIENT_ID": CLIENT_ID,
            "RAG_IDENTITY__OIDC__CLIENT_SECRET_FILE": str(self.client_secret_file),
            "RAG_IDENTITY__OIDC__REDIRECT_URL": self.redirect_url,
            "RAG_IDENTITY__OIDC__AUDIENCE": API_AUDIENCE,
            "RAG_IDENTITY__OIDC__ADMIN_GROUPS": json.dumps([ADMIN_GROUP]),
            "RAG_ACCESS__GROUP_MAP": json.dumps(GROUP_MAP),
        }  # fmt: skip


@pytest.fixture(scope="session")
def openid_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIdProvider]:
    folder = tmp_path_factory.mktemp("openid-provider")
    ui_port = free_port()
    secret_file = folder / "client-secret"
    secret_file.write_text(secrets.token_urlsafe(32) + "\n")
    secret_file.chmod(0o600)
    provider = OpenIdProvider(
        f"http://127.0.0.1:{free_port()}", secret_file, f"http://127.0.0.1:{ui_port}/", ui_port,
        folder / "provider.log",
    )  # fmt: skip
    with running(provider):
        yield provider


@contextmanager
def running(provider: OpenIdProvider) -> Iterator[None]:
    """The provider's process, from its discovery document answering until the block ends;
    each start makes new signing keys."""
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test OpenID provider is not installed: run `make setup`")
    config = {
        "issuer": provider.issuer, "port": urlsplit(provider.issuer).port,
        "resources": {API_RESOURCE: API_AUDIENCE, OTHER_RESOURCE: OTHER_AUDIENCE},
        "default_resource": API_RESOURCE,
        "clients": [{
            "client_id": CLIENT_ID, "client_secret": provider.client_secret,
            "redirect_uris": [provider.redirect_url],
        }],
        "accounts": ACCOUNTS,
    }  # fmt: skip
    config_file = provider.log.with_name("config.json")
    config_file.write_text(json.dumps(config))
    with provider.log.open("ab") as out:
        process = subprocess.Popen(
            [node, str(PROVIDER_DIR / "provider.mjs"), str(config_file)],
            stdout=out, stderr=subprocess.STDOUT, cwd=PROVIDER_DIR,
            env={**os.environ, "NODE_ENV": "test"},
        )  # fmt: skip
    try:
        _wait_for_discovery(provider.issuer, process, provider.log)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_discovery(issuer: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the OpenID provider exited: {log.read_text()[-2000:]}")
        try:
            discovery = httpx.get(f"{issuer}/.well-known/openid-configuration", trust_env=False)
            if discovery.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the OpenID provider did not answer within {STARTUP_SECONDS:.0f} s")


@dataclass(frozen=True)
class Redirect:
    """Where the provider sent the browser back to, with the query it carried."""

    url: str
    query: dict[str, str]


def sign_in_at_provider(authorization_url: str, login: str, password: str = "any") -> Redirect:
    """What a browser does at the provider: open the authorization URL, fill in the login
    form, and follow the provider's redirects until it sends the browser back (not followed)."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(authorization_url))
    with httpx.Client(follow_redirects=False, timeout=10, trust_env=False) as browser:
        response = browser.get(authorization_url)
        for _ in range(10):
            if response.status_code in (302, 303):
                location = urljoin(str(response.url), response.headers["location"])
                if not location.startswith(origin):
                    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
                    return Redirect(location, query)
                response = browser.get(location)
            elif response.status_code == 200 and 'name="login"' in response.text:
                action = re.search(r'<form[^>]*action="([^"]+)"', response.text)
                assert action, response.text
                response = browser.post(
                    urljoin(str(response.url), action.group(1)),
                    data={"prompt": "login", "login": login, "password": password},
                )
            else:
                pytest.fail(f"the provider answered {response.status_code}: {response.text[:500]}")
    pytest.fail("the provider did not send the browser back within 10 steps")


def provider_access_token(
    provider: OpenIdProvider, login: str, resource: str = API_RESOURCE
) -> str:
    """An access token the provider issues to the appliance's client for `login`."""
    return str(provider_tokens(provider, login, resource)["access_token"])


def provider_tokens(
    provider: OpenIdProvider, login: str, resource: str = API_RESOURCE
) -> dict[str, Any]:
    """The tokens the provider issues to the appliance's client for `login`: the
    authorization-code flow with PKCE, driven as a browser and a client would."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    discovery = httpx.get(
        f"{provider.issuer}/.well-known/openid-configuration", trust_env=False
    ).json()
    query = httpx.QueryParams({
        "client_id": CLIENT_ID, "response_type": "code", "scope": "openid profile groups",
        "redirect_uri": provider.redirect_url, "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16), "code_challenge": challenge.decode().rstrip("="),
        "code_challenge_method": "S256", "resource": resource,
    })  # fmt: skip
    back = sign_in_at_provider(f"{discovery['authorization_endpoint']}?{query}", login)
    response = httpx.post(
        discovery["token_endpoint"],
        data={
            "grant_type": "authorization_code", "code": back.query["code"],
            "redirect_uri": provider.redirect_url, "code_verifier": verifier,
        },
        auth=(CLIENT_ID, provider.client_secret), trust_env=False,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


# One document per reader: what each is about, and who may read it.
DOCUMENTS = {
    "finance/budget-2027.md": (
        "# Budget 2027\n\nThe harbour budget for 2027 is 4,200,000 EUR.\n",
        "group:finance",
    ),
    "hr/salary-bands.md": (
        "# Salary bands\n\nThe harbour salary band for engineers is 58,000 EUR.\n",
        "group:hr",
    ),
    "public/canteen.md": (
        "# Canteen\n\nThe harbour canteen opens at 11:30 on weekdays.\n",
        "everyone",
    ),
}


@pytest.fixture(scope="session")
def sso_data(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    """A data folder whose index holds `DOCUMENTS`, ingested for real, each readable by its
    principal alone (set on the index and the ledger after ingestion, as a share's
    permissions would have them)."""
    from ingest.ledger import Ledger
    from ingest.pipeline import Ingestor
    from retrieval.build import build_store

    share = tmp_path_factory.mktemp("sso-share")
    for name, (text, _) in DOCUMENTS.items():
        (share / name).parent.mkdir(parents=True, exist_ok=True)
        (share / name).write_text(text)
    data_dir = tmp_path_factory.mktemp("sso-data")
    settings = make_settings(data_dir)
    store = build_store(settings)
    ledger = Ledger(settings.ledger_path)
    try:
        report = Ingestor(settings, embedder, store, ledger).run([str(share)])
        assert not report.failed, report.failed
        for name, (_, principal) in DOCUMENTS.items():
            record = ledger.get(str(share / name))
            assert record is not None, name
            store.set_acl(record.doc_id, frozenset({principal}))
            ledger.put(replace(record, acl=frozenset({principal})))
    finally:
        ledger.close()
        store.close()
    return data_dir
