"""Who a use case acts for: the name the audit log records, what they may read, and the entry
point they came through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from appliance.users import User
from retrieval.access import Scope

Channel = Literal["cli", "ui", "api", "mcp"]
OPERATOR = "operator"


@dataclass(frozen=True)
class Actor:
    name: str
    scope: Scope
    channel: Channel
    admin: bool = False
    token_id: str | None = None  # the API token the request came with

    @classmethod
    def operator(cls) -> Actor:
        """The operator on the host, through the CLI: reads every document."""
        return cls(OPERATOR, Scope.operator(), "cli", admin=True)

    @classmethod
    def user(
        cls,
        user: User,
        admins_read_everything: bool,
        channel: Channel,
        token_id: str | None = None,
    ) -> Actor:
        return cls(
            user.name, user.reading_scope(admins_read_everything), channel, user.admin, token_id
        )

    def audit_detail(self) -> dict[str, object]:
        """What the audit log adds to each of this actor's events besides their name."""
        detail: dict[str, object] = {"via": self.channel}
        if self.token_id is not None:
            detail["token"] = self.token_id
        return detail
