"""Signing in with the organisation's directory: Active Directory, or another LDAP server.

`LdapIdentity` is the identity provider (`appliance.identity.IdentityProvider`) when the
setting `identity.provider` is `ldap`; `identity.ldap` configures it.

- Finding a user: the service account (`bind_dn`, its password in `bind_password_file`, read
  anew for each connection so it can be rotated) searches `base_dn` for the person (not a
  computer) whose `user_attribute` is the name as typed, escaped for the filter. No match, or
  more than one, is no user. An account the directory has disabled or let expire is no user
  either, so its open sessions end and its API tokens stop working.
- The password is checked by binding as that user's DN with it, on a connection of its own.
  An empty password is refused unchecked: a simple bind without a password is an anonymous
  bind, which servers accept.
- Groups, nested ones included: on Active Directory, the user's `tokenGroups` (every group
  they are in, directly or through other groups, and their primary group) give security
  identifiers, named with one search under `base_dn`. A directory without `tokenGroups`
  (OpenLDAP with its memberof overlay) gives the user's `memberOf`, followed upwards.
- The user: `name` as the directory spells it (the `user_attribute`'s value), `groups` the
  groups' names (`sAMAccountName`, else `cn`), `admin` when one of them is in `admin_groups`
  (names compared without regard to case), share groups through `access.group_map`, and
  `sids` the user's own security identifier and their groups', which NTFS ACLs name.
- Refusals: a right password of an account that may not sign in gives `AccountRefused` with
  the state Active Directory's sub-code names (775 locked, 532 password expired, 773 password
  to be changed, 533 disabled, 701 account expired); only 775 is told whatever the password.
  Anything else (52e, a wrong password; an unknown name) is `None`: the two are not told apart.
- TLS always: `ldaps://`, or `ldap://` upgraded with StartTLS before anything is sent; the
  server's certificate must chain to `ca_file` (the system's CAs when unset) and name the
  server as the URL does. The servers of `url` are tried in order; one that cannot be
  reached, or does not answer within `timeout_seconds`, passes the operation to the next.
  When none answers, or the settings cannot work, `DirectoryUnavailable` says why: sign-in
  and lookups fail closed.
- Break-glass: the appliance's own admins (`rag users add NAME --admin`) sign in with their
  local password, and are looked up locally, whether the directory answers or not. Their names
  are theirs alone: a directory user of the same name cannot sign in, so break-glass accounts
  get names nobody in the directory has. Local users who are not admins do not sign in.
"""

from __future__ import annotations

import math
import re
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from ipaddress import ip_address
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ldap3 import BASE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.protocol.formatters.formatters import format_sid
from ldap3.utils.conv import escape_bytes, escape_filter_chars

from appliance.errors import AccountRefused, AccountState, DirectoryUnavailable
from appliance.users import GroupMap, User, UserDirectory, share_groups
from settings import LdapSettings, SecretFileError, read_secret

_PASSWORD_SETTING = "RAG_IDENTITY__LDAP__BIND_PASSWORD_FILE"
# Active Directory's reasons for refusing a bind (the `data` field of its message).
_REFUSALS: dict[str, AccountState] = {
    "775": "account_locked",
    "532": "password_expired",
    "773": "password_must_change",
    "533": "account_disabled",
    "701": "account_expired",
}
_SUB_CODE = re.compile(r"\bdata ([0-9a-f]{3,8})\b", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_ACCOUNT_DISABLED = 0x2  # in userAccountControl
_NEVER_EXPIRES = {0, 0x7FFFFFFFFFFFFFFF}  # accountExpires
_WINDOWS_EPOCH_OFFSET = 11_644_473_600  # seconds from 1601-01-01 to 1970-01-01
_INVALID_CREDENTIALS = 49
_SUCCESS, _NO_SUCH_OBJECT = 0, 32
# How many groups the memberOf walk reads at most (a cycle or a runaway hierarchy stops it).
_MAX_GROUPS = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class _Endpoint:
    url: str
    host: str
    port: int
    start_tls: bool  # else TLS from the start (ldaps)
    tls: Tls

    def server(self, timeout: float) -> Server:
        # A Server of its own per connection: ldap3 remembers a failed address as unusable.
        return Server(
            self.host, port=self.port, use_ssl=not self.start_tls, tls=self.tls, get_info=NONE,
            connect_timeout=timeout,
        )  # fmt: skip


@dataclass(frozen=True)
class _Account:
    """A person's entry as the service account found it."""

    dn: str
    name: str
    sid: str | None
    usable: bool  # neither disabled nor expired
    member_of: tuple[str, ...]


class LdapIdentity:
    """Users of the organisation's directory, and the appliance's own admins as break-glass
    accounts (see the module's docstring)."""

    def __init__(
        self,
        settings: LdapSettings,
        local: UserDirectory,
        group_map: GroupMap,
        clock: Callable[[], float] = time.time,
        token_groups: bool = True,
    ) -> None:
        """`token_groups`: read Active Directory's tokenGroups where the directory has them;
        False follows memberOf, as for a directory without them."""
        self.refresh_seconds = settings.refresh_seconds
        self._settings = settings
        self._local = local
        self._group_map = group_map
        self._admin_groups = {group.casefold() for group in settings.admin_groups}
        self._clock = clock
        self._token_groups = token_groups
        self._endpoints: list[_Endpoint] | None = None

    def authenticate(self, name: str, password: str) -> User | None:
        local_admin = self._local_admin(name)
        if local_admin is not None:
            checked = self._local.authenticate(local_admin.name, password)
            return local_admin if checked is not None and checked.admin else None
        if not password or not name.strip():
            return None

        def sign_in(endpoint: _Endpoint) -> User | None:
            with self._service(endpoint) as service:
                account = self._find(service, name)
                if account is None:
                    return None
                if not self._password_is_right(endpoint, account, password):
                    return None
                return self._user(service, account)

        return self._on_directory(sign_in)

    def lookup(self, name: str) -> User | None:
        local_admin = self._local_admin(name)
        if local_admin is not None:
            return local_admin
        if not name.strip():
            return None

        def read(endpoint: _Endpoint) -> User | None:
            with self._service(endpoint) as service:
                account = self._find(service, name)
                if account is None or not account.usable:
                    return None
                return self._user(service, account)

        return self._on_directory(read)

    # -- the local break-glass admins --------------------------------------------------------

    def _local_admin(self, name: str) -> User | None:
        user = self._local.find(name)
        return replace(user, break_glass=True) if user is not None and user.admin else None

    # -- reaching the directory --------------------------------------------------------------

    def _on_directory(self, operation: Callable[[_Endpoint], T]) -> T:
        """`operation` on the first server that completes it; DirectoryUnavailable when none
        does, saying what each one did."""
        failures = []
        for endpoint in self._reachable():
            try:
                return operation(endpoint)
            except LDAPException as exc:
                failures.append(f"{endpoint.url}: {_describe(exc)}")
        raise DirectoryUnavailable(
            "no directory server answered (is it up, and reachable from here as "
            "RAG_IDENTITY__LDAP__URL says?): " + "; ".join(failures)
        )

    def _reachable(self) -> list[_Endpoint]:
        if self._endpoints is None:
            self._endpoints = _endpoints(self._settings)
        return self._endpoints

    @contextmanager
    def _connection(self, endpoint: _Endpoint, dn: str, password: str) -> Iterator[Connection]:
        """A connection to `endpoint`, TLS established, not yet bound."""
        timeout = self._settings.timeout_seconds
        connection = Connection(
            endpoint.server(timeout), user=dn, password=password, authentication=SIMPLE,
            raise_exceptions=False, read_only=True, auto_referrals=False,
            # ldap3 sets the socket's receive timeout in whole seconds.
            receive_timeout=max(1, math.ceil(timeout)),
        )  # fmt: skip
        try:
            connection.open()
            if endpoint.start_tls:
                connection.start_tls()
            yield connection
        finally:
            connection.unbind()

    @contextmanager
    def _service(self, endpoint: _Endpoint) -> Iterator[Connection]:
        """A connection bound as the service account."""
        if not self._settings.bind_dn:
            raise DirectoryUnavailable(
                "RAG_IDENTITY__LDAP__BIND_DN is not set: name the service account that looks "
                "users up"
            )
        try:
            password = read_secret(self._settings.bind_password_file, _PASSWORD_SETTING)
        except SecretFileError as exc:
            raise DirectoryUnavailable(str(exc)) from exc
        with self._connection(endpoint, self._settings.bind_dn, password) as connection:
            if not connection.bind():
                raise DirectoryUnavailable(
                    f"{endpoint.url} refused the service account RAG_IDENTITY__LDAP__BIND_DN "
                    f"({connection.result['description']}): check the account and the password "
                    f"in {_PASSWORD_SETTING}"
                )
            yield connection

    def _password_is_right(self, endpoint: _Endpoint, account: _Account, password: str) -> bool:
        """Whether `password` is the account's; AccountRefused when the directory refuses the
        account whatever the password, or refuses this right password for its state."""
        with self._connection(endpoint, account.dn, password) as connection:
            if connection.bind():
                return True
            result = connection.result
        if result["result"] != _INVALID_CREDENTIALS:
            raise DirectoryUnavailable(
                f"{endpoint.url} could not check a password: {result['description']} "
                f"{result['message']}".strip()
            )
        found = _SUB_CODE.search(result["message"] or "")
        state = _REFUSALS.get(found.group(1).lower()) if found else None
        if state is not None:
            raise AccountRefused(account.name, state)
        return False

    # -- reading users and groups ------------------------------------------------------------

    def _find(self, service: Connection, name: str) -> _Account | None:
        attribute = self._settings.user_attribute
        if not _ATTRIBUTE.match(attribute):
            raise DirectoryUnavailable(
                f"RAG_IDENTITY__LDAP__USER_ATTRIBUTE {attribute!r} is no attribute name"
            )
        query = (
            f"(&(objectClass=person)(!(objectClass=computer))"
            f"({attribute}={escape_filter_chars(name.strip())}))"
        )
        entries = self._search(
            service, self._settings.base_dn, query, SUBTREE,
            [attribute, "objectSid", "userAccountControl", "accountExpires", "memberOf"],
        )  # fmt: skip
        if len(entries) != 1:
            return None
        dn, attributes = entries[0]
        control = int(_text(attributes, "userAccountControl") or 0)
        expires = int(_text(attributes, "accountExpires") or 0)
        expired = (
            expires not in _NEVER_EXPIRES
            and expires / 10_000_000 - _WINDOWS_EPOCH_OFFSET <= self._clock()
        )
        return _Account(
            dn=dn,
            name=_text(attributes, attribute) or name.strip(),
            sid=_sid(attributes),
            usable=not control & _ACCOUNT_DISABLED and not expired,
            member_of=tuple(_texts(attributes, "memberOf")),
        )

    def _user(self, service: Connection, account: _Account) -> User:
        groups, group_sids = self._groups(service, account)
        own = (account.sid,) if account.sid else ()
        return User(
            name=account.name,
            groups=groups,
            admin=any(group.casefold() in self._admin_groups for group in groups),
            share_groups=share_groups(groups, self._group_map),
            sids=(*own, *group_sids),
        )

    def _groups(
        self, service: Connection, account: _Account
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The names and security identifiers of every group the account is in, sorted."""
        token_groups = None
        if self._token_groups:
            entries = self._search(service, account.dn, "(objectClass=*)", BASE, ["tokenGroups"])
            token_groups = entries[0][1].get("tokenGroups") if entries else None
        if self._token_groups and not token_groups and account.sid is not None:
            # Active Directory always lists the primary group: an empty list means the service
            # account may not read it, and groups missed would miss their denies.
            raise DirectoryUnavailable(
                f"the directory gave the service account no tokenGroups for {account.name}: "
                "grant it the right to read tokenGroups (Windows Authorization Access group)"
            )
        if not token_groups:
            return self._groups_by_member_of(service, account.member_of)
        query = "(|" + "".join(f"(objectSid={escape_bytes(sid)})" for sid in token_groups) + ")"
        names = set()
        for _, attributes in self._search(
            service, self._settings.base_dn, query, SUBTREE, ["sAMAccountName", "cn"]
        ):
            name = _text(attributes, "sAMAccountName") or _text(attributes, "cn")
            if name:
                names.add(name)
        return tuple(sorted(names)), tuple(sorted(format_sid(sid) for sid in token_groups))

    def _groups_by_member_of(
        self, service: Connection, member_of: Sequence[str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Groups followed upwards through `memberOf`, for directories without tokenGroups."""
        names: set[str] = set()
        sids: set[str] = set()
        seen: set[str] = set()
        waiting = list(member_of)
        while waiting and len(seen) < _MAX_GROUPS:
            dn = waiting.pop()
            if dn.casefold() in seen:
                continue
            seen.add(dn.casefold())
            entries = self._search(
                service, dn, "(objectClass=*)", BASE, ["sAMAccountName", "cn", "objectSid",
                                                       "memberOf"],
            )  # fmt: skip
            for _, attributes in entries:
                name = _text(attributes, "sAMAccountName") or _text(attributes, "cn")
                if name:
                    names.add(name)
                if (sid := _sid(attributes)) is not None:
                    sids.add(sid)
                waiting.extend(_texts(attributes, "memberOf"))
        return tuple(sorted(names)), tuple(sorted(sids))

    def _search(
        self, service: Connection, base: str, query: str, scope: str, attributes: list[str]
    ) -> list[tuple[str, Any]]:
        """(dn, raw attributes) of each entry found; an entry gone is none, any other failure
        DirectoryUnavailable."""
        service.search(base, query, scope, attributes=attributes)
        result = service.result
        if result["result"] == _NO_SUCH_OBJECT and scope == BASE:
            return []
        if result["result"] != _SUCCESS:
            raise DirectoryUnavailable(
                f"a search under {base!r} failed: {result['description']} {result['message']}"
                " (check RAG_IDENTITY__LDAP__BASE_DN and the service account's read access)"
            )
        return [
            (entry["dn"], entry["raw_attributes"])
            for entry in service.response or []
            if entry.get("type") == "searchResEntry"
        ]


def _endpoints(settings: LdapSettings) -> list[_Endpoint]:
    """The servers of `settings.url`, in order. DirectoryUnavailable when the settings cannot
    work (no URL, a URL that is not ldaps:// or ldap://, a CA file that is not there)."""
    if not settings.url.split():
        raise DirectoryUnavailable(
            "RAG_IDENTITY__LDAP__URL is not set: give the directory server, e.g. "
            "ldaps://dc1.corp.example:636"
        )
    if not settings.base_dn:
        raise DirectoryUnavailable("RAG_IDENTITY__LDAP__BASE_DN is not set")
    if settings.ca_file is not None and not settings.ca_file.is_file():
        raise DirectoryUnavailable(
            f"RAG_IDENTITY__LDAP__CA_FILE {settings.ca_file} is not a file: point it at the "
            "PEM file of the CA that signed the directory servers' certificates"
        )
    endpoints = []
    for url in settings.url.split():
        parts = urlsplit(url)
        if parts.scheme not in ("ldaps", "ldap") or not parts.hostname:
            raise DirectoryUnavailable(
                f"RAG_IDENTITY__LDAP__URL {url!r}: use ldaps://HOST:636, or ldap://HOST:389 "
                "(upgraded with StartTLS)"
            )
        host = parts.hostname
        tls = Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
            sni=None if _is_address(host) else host,
        )
        secure = parts.scheme == "ldaps"
        port = parts.port or (636 if secure else 389)
        endpoints.append(_Endpoint(url, host, port, start_tls=not secure, tls=tls))
    return endpoints


def _is_address(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def _describe(exc: LDAPException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _texts(attributes: Any, name: str) -> list[str]:
    return [value.decode("utf-8", "replace") for value in attributes.get(name) or []]


def _text(attributes: Any, name: str) -> str | None:
    values = _texts(attributes, name)
    return values[0] if values else None


def _sid(attributes: Any) -> str | None:
    values = attributes.get("objectSid") or []
    return str(format_sid(values[0])) if values else None
