"""Who a search acts for.

A search always carries a `Scope`. An ACL is a set of entries: principals that may read
(`user:alice`, `group:finance`, `sid:S-1-5-21-…`, `everyone`) and principals that may not,
written `deny:` and the principal (`deny:group:interns`, `deny:everyone`). A scope of
principals sees an ACL that allows at least one of them and denies none of them: a deny
entry wins over every allow, as NTFS decides when the order of its entries is ignored.
Every user holds `everyone`, so `deny:everyone` hides a chunk from every scope but the
operator's. A user whose security identifiers are not known (a local or single sign-on
account) holds `SIDS_UNKNOWN` instead of `sid:` principals: an ACL that denies a domain SID
also denies `SIDS_UNKNOWN`, since whether that deny names such a user cannot be told. An
empty set of principals sees nothing. The host operator's unrestricted scope is a separate,
explicit value that sees everything, so that "nobody" can never be mistaken for "everybody".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EVERYONE = "everyone"
DENY_PREFIX = "deny:"
SIDS_UNKNOWN = "sids:unknown"


def denied(principal: str) -> str:
    """The ACL entry that refuses `principal` (`group:interns` → `deny:group:interns`)."""
    return DENY_PREFIX + principal


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

    @property
    def denials(self) -> frozenset[str]:
        """The ACL entries that hide a chunk from this scope: the deny form of each of its
        principals, and `deny:everyone`, which refuses every holder of a scope."""
        return frozenset(denied(p) for p in self.principals | {EVERYONE})

    def may_read(self, acl: Iterable[str]) -> bool:
        """Whether the scope may read what `acl` protects: always for the operator's scope;
        otherwise when the ACL holds one of the scope's principals and none of `denials`
        (`deny:` and one of its principals, or `deny:everyone`)."""
        if self.unrestricted:
            return True
        entries = frozenset(acl)
        return not entries.isdisjoint(self.principals) and entries.isdisjoint(self.denials)
