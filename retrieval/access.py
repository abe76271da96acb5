"""Who a search acts for.

A search always carries a `Scope`. A scope of principals (`user:alice`, `group:finance`,
`everyone`) sees the chunks whose ACL shares at least one of them; an empty set of principals
sees nothing. The host operator's unrestricted scope is a separate, explicit value, so that
"nobody" can never be mistaken for "everybody".
"""

from __future__ import annotations

from dataclasses import dataclass

EVERYONE = "everyone"


@dataclass(frozen=True)
class Scope:
    principals: frozenset[str]
    unrestricted: bool = False

    @classmethod
    def of(cls, principals: frozenset[str] | set[str]) -> Scope:
        return cls(principals=frozenset(principals))

    @classmethod
    def operator(cls) -> Scope:
        """The appliance's operator on the host: sees every document."""
        return cls(principals=frozenset(), unrestricted=True)

    @property
    def sees_nothing(self) -> bool:
        return not self.unrestricted and not self.principals
