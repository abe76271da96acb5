"""Errors of the application layer, the one root every entry point maps at its edge (the CLI
to exit statuses, the API to HTTP statuses).

ApplianceError
├── BadRequest              the caller asked for something that can't be done as asked
│   ├── UnknownUser         a user name the user directory doesn't know
│   ├── InvalidUser         a user name, group or password the directory refuses
│   ├── UnknownDocument     no indexed file has that path or document id
│   ├── UnknownConversation no conversation of that user has that id
│   ├── UnknownToken        no API token has that id
│   ├── InvalidToken        an API token's lifetime or label the token store refuses
│   └── NotAllowed          the acting user may not do this (an admin's own role, say)
├── Unauthorized            no valid credentials: a wrong, expired or revoked token
├── ProviderError           the OpenID provider can't be reached, or answers what the
│                           appliance refuses (a discovery document pointing elsewhere)
├── DirectoryUnavailable    the organisation's directory can't be reached, didn't answer in
│                           time, or refused the appliance's service account
├── AccountRefused          the directory refused a sign-in for the account's state (locked,
│                           disabled, expired, its password expired or to be changed)
└── AuditError              the audit log can't be written or doesn't match its head
"""

from __future__ import annotations

from typing import Literal

# Why a directory refuses an account whatever its password (Active Directory's sub-codes).
AccountState = Literal[
    "account_locked", "password_expired", "password_must_change", "account_disabled",
    "account_expired",
]  # fmt: skip


class ApplianceError(Exception):
    """Base of every error the application layer raises itself."""


class BadRequest(ApplianceError):
    """The request can't be done as asked: a usage error (CLI exit 2, HTTP 4xx)."""


class UnknownUser(BadRequest):
    pass


class InvalidUser(BadRequest):
    pass


class UnknownDocument(BadRequest):
    pass


class UnknownConversation(BadRequest):
    pass


class UnknownToken(BadRequest):
    pass


class InvalidToken(BadRequest):
    pass


class NotAllowed(BadRequest):
    pass


class Unauthorized(ApplianceError):
    """Missing, wrong, expired or revoked credentials. The message says which, for the
    audit log; a client is told only that it is not authorised."""


class ProviderError(ApplianceError):
    """The organisation's OpenID provider can't be used: unreachable, misconfigured, or its
    discovery document points the appliance elsewhere than the issuer."""


class DirectoryUnavailable(ApplianceError):
    """The organisation's directory can't be used now; the message says why (for the logs and
    the operator, never shown to a user). Whatever needed it fails closed."""


class AccountRefused(ApplianceError):
    """The directory refused to sign `name` (as the directory spells it) in for the state of
    their account."""

    def __init__(self, name: str, state: AccountState) -> None:
        super().__init__(f"{name}: {state.replace('_', ' ')}")
        self.name, self.state = name, state


class AuditError(ApplianceError):
    pass
