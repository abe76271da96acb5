from __future__ import annotations

import pytest

from retrieval.access import DENY_PREFIX, EVERYONE, Scope, denied

SID_A = "sid:S-1-5-21-1-2-3-1104"
SID_B = "sid:S-1-5-21-1-2-3-1107"


def test_the_deny_form_of_a_principal_is_the_prefix_and_the_principal() -> None:
    assert denied("group:interns") == "deny:group:interns"
    assert denied(SID_B) == DENY_PREFIX + SID_B


@pytest.mark.parametrize(
    ("principals", "acl", "readable"),
    [
        ({SID_A}, {SID_A, denied(SID_B)}, True),
        ({SID_A, SID_B}, {SID_A, denied(SID_B)}, False),  # a deny wins over every allow
        ({SID_B}, {SID_A, denied(SID_B)}, False),
        ({"user:carol"}, {SID_A, denied(SID_B)}, False),  # allowed by no entry, denied by none
        ({"user:carol", EVERYONE}, {EVERYONE, denied("group:interns")}, True),
        ({"user:ivan", "group:interns", EVERYONE}, {EVERYONE, denied("group:interns")}, False),
        ({SID_A}, {SID_A, denied(EVERYONE)}, False),  # everyone holds `everyone`
        ({SID_A, EVERYONE}, {EVERYONE, denied(EVERYONE)}, False),
        (set(), {EVERYONE}, False),
    ],
)
def test_a_scope_may_read_an_acl_that_allows_one_of_its_principals_and_denies_none(
    principals: set[str], acl: set[str], readable: bool
) -> None:
    assert Scope.of(principals).may_read(acl) is readable


def test_the_operator_may_read_any_acl_even_one_denying_everyone() -> None:
    assert Scope.operator().may_read({denied(EVERYONE)})
    assert Scope.operator().may_read(set())


def test_a_deny_of_a_domain_sid_hides_the_file_from_users_whose_sids_are_unknown() -> None:
    from appliance.users import User

    acl = {"everyone", "deny:sid:S-1-5-21-1-2-3-1150", "deny:sids:unknown"}
    local = User("ivan", ("interns",), False)
    directory_intern = User("ivan", ("Interns",), False, sids=("S-1-5-21-1-2-3-1150",))
    directory_other = User("olga", ("Staff",), False, sids=("S-1-5-21-1-2-3-1104",))
    assert not local.scope.may_read(acl)
    assert not directory_intern.scope.may_read(acl)
    assert directory_other.scope.may_read(acl)
