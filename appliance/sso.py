"""Single sign-on with the organisation's OpenID provider (OpenID Connect, authorization-code
flow with PKCE), and the provider's JWT access tokens on the API.

Everything is fetched from the configured issuer (`identity.oidc.issuer`) and nowhere else:
its discovery document (`/.well-known/openid-configuration`), which must name that issuer and
put its token endpoint and signing keys (`jwks_uri`) on the issuer's origin (scheme, host and
port), else the provider is refused (ProviderError); then the signing keys. Both are kept for
the process; the keys are fetched again, once, when a token names a key id they lack (the
provider rotated its keys; at most every 10 s). Plain http is refused except for a loopback
issuer. Settings that cannot work raise ProviderError on first use, not before: break-glass
admins still sign in.

A sign-in: `OidcIdentity.start_sign_in` gives the provider's authorization URL (PKCE S256,
`state`, `nonce`) and keeps what the answer must match (the pending sign-in) in this process
for 10 minutes, for one use: the browser comes back in a new UI session. It also gives a
browser key, which the UI keeps in a cookie of the browser that starts the sign-in; the
pending sign-in holds only its hash. `finish_sign_in` takes the code, the state and the key
the browser came back with (a sign-in started in another browser, as in a forged link that
would sign the victim in as the forger, is refused), exchanges the code for tokens (the
client secret from `identity.oidc.client_secret_file`, sent as HTTP basic authentication), and
validates the ID token: signature (an asymmetric algorithm, a key of the issuer's), `iss`,
`aud` holding the client id, `exp`, and the `nonce` of that sign-in.

An API access token is a JWT the provider issued for the appliance: signature, `iss`, `aud`
(`identity.oidc.audience`, or the client id) and `exp` are checked; an ID token (it carries a
`nonce`) is no access token.

Who the token's user is: `User(name=<identity.oidc.username_claim>, groups=<the groups claim,
or none when the token has no such claim>, admin=<member of one of identity.oidc.admin_groups>,
share_groups=<access.group_map of the groups>)`. A user without groups reads what `everyone`
may read.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import is_secure_transport
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from appliance.errors import ProviderError, Unauthorized
from appliance.users import GroupMap, User, UserDirectory, share_groups
from settings import OidcSettings, SecretFileError, Settings, read_secret

DISCOVERY_PATH = "/.well-known/openid-configuration"
SCOPES = "openid profile groups"
PENDING_SECONDS = 600.0
# At most this many sign-ins wait for their browser at once; the oldest go first.
_MAX_PENDING = 10_000
_LEEWAY_SECONDS = 60
_TIMEOUT_SECONDS = 10.0
_KEYS_REFETCH_SECONDS = 10.0
# Signatures the appliance accepts: the provider's public keys only, never a shared secret.
ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


@dataclass(frozen=True)
class PendingSignIn:
    """What the provider's answer to one sign-in must match."""

    state: str
    nonce: str
    code_verifier: str
    expires_at: float
    browser_key_hash: str = ""  # of the key the browser that started it keeps


class OidcClient:
    """The appliance as a client of the OpenID provider (see the module's docstring)."""

    def __init__(
        self,
        settings: OidcSettings,
        group_map: GroupMap,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.issuer = settings.issuer.rstrip("/")
        self.audience = settings.audience or settings.client_id
        self._group_map = group_map
        self._clock = clock
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._discovery: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_fetched_at = -math.inf

    # -- the provider's documents ------------------------------------------------------------

    def _checked_settings(self) -> None:
        """Raises ProviderError when the settings cannot work (checked on first use, so that
        break-glass admins still sign in with them wrong)."""
        oidc = self.settings
        if not oidc.issuer or not oidc.client_id or not oidc.redirect_url:
            raise ProviderError(
                "single sign-on needs RAG_IDENTITY__OIDC__ISSUER, __CLIENT_ID and __REDIRECT_URL"
            )
        if not is_secure_transport(oidc.issuer):
            raise ProviderError(
                f"the issuer {oidc.issuer} is not https: only a loopback issuer may be http"
            )

    def _verify(self) -> ssl.SSLContext | bool:
        if self.settings.ca_file is None:
            return True
        try:
            return ssl.create_default_context(cafile=str(self.settings.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ProviderError(
                f"RAG_IDENTITY__OIDC__CA_FILE {self.settings.ca_file} cannot be read: {exc}"
            ) from exc

    def discovery(self) -> dict[str, Any]:
        """The issuer's discovery document, fetched once and checked (ProviderError)."""
        with self._lock:
            if self._discovery is None:
                self._checked_settings()
                if self._http is None:
                    # trust_env=False: no proxy from the environment; the provider is inside.
                    self._http = httpx.Client(
                        verify=self._verify(), timeout=_TIMEOUT_SECONDS, follow_redirects=False,
                        trust_env=False,
                    )  # fmt: skip
                document = self._get_json(self.issuer + DISCOVERY_PATH, "discovery document")
                self._discovery = self._checked(document)
            return self._discovery

    def _checked(self, document: dict[str, Any]) -> dict[str, Any]:
        named = str(document.get("issuer", "")).rstrip("/")
        if named != self.issuer:
            raise ProviderError(
                f"the discovery document of {self.issuer} names another issuer ({named!r}): "
                "set RAG_IDENTITY__OIDC__ISSUER to the issuer exactly as the provider names it"
            )
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(field), str):
                raise ProviderError(f"the discovery document of {self.issuer} has no {field}")
        for field in ("token_endpoint", "jwks_uri"):
            if _origin(document[field]) != _origin(self.issuer):
                raise ProviderError(
                    f"the discovery document of {self.issuer} puts its {field} on another "
                    f"origin ({document[field]}): refused, the appliance talks to the issuer "
                    "alone"
                )
        return document

    def _signing_keys(self, kid: str | None) -> KeySet:
        """The issuer's keys; fetched again when none has the key id `kid` (at most every
        `_KEYS_REFETCH_SECONDS`: tokens naming made-up keys do not make the appliance hammer
        the provider)."""
        with self._lock:
            recent = self._clock() - self._keys_fetched_at < _KEYS_REFETCH_SECONDS
            if self._keys is not None and (_has_key(self._keys, kid) or recent):
                return self._keys
        jwks_uri = self.discovery()["jwks_uri"]
        document = self._get_json(jwks_uri, "signing keys")
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderError(f"the signing keys at {jwks_uri} cannot be read: {exc}") from exc
        with self._lock:
            self._keys, self._keys_fetched_at = keys, self._clock()
        return keys

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        assert self._http is not None  # made by `discovery`, which comes first
        try:
            response = self._http.get(url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderError(
                f"the {what} of the OpenID provider could not be read from {url}: {exc}; "
                "check RAG_IDENTITY__OIDC__ISSUER and, for a private CA, __CA_FILE"
            ) from exc
        if not isinstance(document, dict):
            raise ProviderError(f"the {what} at {url} is not a JSON object")
        return document

    # -- signing in --------------------------------------------------------------------------

    def _oauth(self) -> OAuth2Client:
        try:
            secret = read_secret(
                self.settings.client_secret_file, "RAG_IDENTITY__OIDC__CLIENT_SECRET_FILE"
            )
        except SecretFileError as exc:
            raise ProviderError(str(exc)) from exc
        return OAuth2Client(
            client_id=self.settings.client_id,
            client_secret=secret,
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method's name)
            scope=SCOPES,
            redirect_uri=self.settings.redirect_url,
            code_challenge_method="S256",
            verify=self._verify(),
            timeout=_TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
        )

    def authorization_url(self) -> tuple[str, PendingSignIn]:
        """Where to send the browser, and what its answer must match."""
        pending = PendingSignIn(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
            expires_at=self._clock() + PENDING_SECONDS,
        )
        endpoint = self.discovery()["authorization_endpoint"]
        with self._oauth() as oauth:
            url, _ = oauth.create_authorization_url(
                endpoint, state=pending.state, code_verifier=pending.code_verifier,
                nonce=pending.nonce,
            )  # fmt: skip
        return str(url), pending

    def exchange(self, code: str, pending: PendingSignIn) -> dict[str, Any]:
        """The claims of the ID token the code is exchanged for (Unauthorized: why not)."""
        token_endpoint = self.discovery()["token_endpoint"]
        try:
            with self._oauth() as oauth:
                tokens = oauth.fetch_token(
                    token_endpoint, grant_type="authorization_code", code=code,
                    code_verifier=pending.code_verifier,
                )  # fmt: skip
        except AuthlibBaseError as exc:
            raise Unauthorized(f"the provider refused the code: {exc}") from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"the token endpoint {token_endpoint} failed: {exc}") from exc
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthorized("the provider's answer has no ID token")
        claims = self._claims(id_token, self.settings.client_id, "ID token")
        if claims.get("nonce") != pending.nonce:
            raise Unauthorized("the ID token's nonce is not this sign-in's")
        return claims

    def access_token_claims(self, token: str) -> dict[str, Any]:
        """The claims of a JWT access token of the provider's for the appliance's audience
        (Unauthorized: why not)."""
        claims = self._claims(token, self.audience, "access token")
        if "nonce" in claims:
            raise Unauthorized("an ID token is not an access token")
        return claims

    def _claims(self, token: str, audience: str, what: str) -> dict[str, Any]:
        try:
            kid = jws.extract_compact(token.encode()).headers().get("kid")
        except (JoseError, ValueError) as exc:
            raise Unauthorized(f"the {what} is not a signed JWT: {exc}") from exc
        keys = self._signing_keys(kid)
        try:
            claims = jwt.decode(token, keys, algorithms=list(ALGORITHMS)).claims
            jwt.JWTClaimsRegistry(
                now=int(self._clock()), leeway=_LEEWAY_SECONDS,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": audience},
                exp={"essential": True},
            ).validate(claims)  # fmt: skip
        except (JoseError, ValueError) as exc:
            raise Unauthorized(f"invalid {what}: {type(exc).__name__}: {exc}") from exc
        return claims

    # -- who the token's user is -------------------------------------------------------------

    def user_of(self, claims: Mapping[str, Any]) -> User:
        name = claims.get(self.settings.username_claim)
        if not isinstance(name, str) or not name.strip():
            raise Unauthorized(f"the token has no {self.settings.username_claim} claim")
        groups = _groups(claims.get(self.settings.groups_claim))
        admin = bool(set(groups) & set(self.settings.admin_groups))
        return User(name.strip(), groups, admin, share_groups(groups, self._group_map))

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def _has_key(keys: KeySet, kid: str | None) -> bool:
    if kid is None:
        return True
    try:
        keys.get_by_kid(kid)
    except (JoseError, ValueError, KeyError):
        return False
    return True


def _groups(claim: object) -> tuple[str, ...]:
    """The groups a groups claim lists (a list of strings, or one string); none without it."""
    if isinstance(claim, str):
        claim = [claim]
    if not isinstance(claim, Sequence) or isinstance(claim, bytes):
        return ()
    return tuple(sorted({group for group in claim if isinstance(group, str) and group}))


class OidcIdentity:
    """Users of the organisation's single sign-on, plus the local admins as break-glass
    accounts (`rag users add NAME --admin`): a name and password sign in only such an admin,
    and a local admin's name is theirs alone (single sign-on refuses it).

    `lookup` gives a single sign-on user as they last signed in through this process: a
    session keeps the groups its ID token carried until it ends (`ui.session_minutes`), and
    when the same user signs in again with other groups, their older sessions end (`changed`).
    """

    refresh_seconds = 0.0

    def __init__(
        self, client: OidcClient, directory: UserDirectory, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self._directory = directory
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, PendingSignIn] = {}
        self._signed_in: dict[str, User] = {}

    def authenticate(self, name: str, password: str) -> User | None:
        user = self._directory.authenticate(name, password)
        return replace(user, break_glass=True) if user is not None and user.admin else None

    def lookup(self, name: str) -> User | None:
        local = self._directory.find(name)
        if local is not None and local.admin:
            return replace(local, break_glass=True)
        with self._lock:
            return self._signed_in.get(name)

    def start_sign_in(self) -> tuple[str, str]:
        """The provider's authorization URL for a new sign-in (kept pending, see the module),
        and the key the browser that follows it must come back with."""
        url, pending = self.client.authorization_url()
        browser_key = secrets.token_urlsafe(32)
        pending = replace(pending, browser_key_hash=_hash(browser_key))
        now = self._clock()
        with self._lock:
            for state in [s for s, p in self._pending.items() if p.expires_at <= now]:
                del self._pending[state]
            while len(self._pending) >= _MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            self._pending[pending.state] = pending
        return url, browser_key

    def finish_sign_in(self, code: str, state: str, browser_key: str) -> User:
        """The user the provider signed in (Unauthorized: why not). A state is good once, and
        only in the browser that started the sign-in."""
        with self._lock:
            pending = self._pending.get(state)
            # A browser without the key leaves the sign-in to the one that started it.
            if pending is not None and hmac.compare_digest(
                pending.browser_key_hash, _hash(browser_key)
            ):
                del self._pending[state]
        if pending is None:
            raise Unauthorized("unknown or already used sign-in state")
        if not hmac.compare_digest(pending.browser_key_hash, _hash(browser_key)):
            raise Unauthorized("the sign-in was started in another browser")
        if pending.expires_at <= self._clock():
            raise Unauthorized("the sign-in took longer than 10 minutes")
        user = self._not_a_local_admin(self.client.user_of(self.client.exchange(code, pending)))
        with self._lock:
            self._signed_in[user.name] = user
        return user

    def user_of_access_token(self, token: str) -> User:
        """The user the provider's access token stands for (Unauthorized: why not)."""
        return self._not_a_local_admin(self.client.user_of(self.client.access_token_claims(token)))

    def _not_a_local_admin(self, user: User) -> User:
        """`user`, unless a local admin has their name: that name is the admin's alone."""
        local = self._directory.find(user.name)
        if local is not None and local.admin:
            raise Unauthorized(f"{user.name} is a local admin's name: they sign in with the form")
        return user


def _hash(browser_key: str) -> str:
    return hashlib.sha256(browser_key.encode()).hexdigest()


def build_oidc_identity(settings: Settings, directory: UserDirectory) -> OidcIdentity:
    return OidcIdentity(OidcClient(settings.identity.oidc, settings.access.group_map), directory)
