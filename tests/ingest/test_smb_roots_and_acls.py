"""How `rag ingest` reads an `smb://` root, and how a file's own security descriptor becomes its
ACL (`ingest.permissions.descriptor_readers`). The descriptors are encoded as SMB's QUERY_INFO
returns them; tests/directory/test_smb_ingest.py reads real ones from a Samba share."""

from __future__ import annotations

import pytest

from ingest.context import folder_of
from ingest.errors import BadIngestRoot
from ingest.permissions import UninterpretableAcl, descriptor_readers
from ingest.pipeline import check_roots
from ingest.smb import parse_url
from tests.ingest.test_ntacl import NO_DACL, allow, deny, descriptor

READ_DATA, READ_CONTROL, WRITE_DATA = 0x1, 0x20000, 0x2
DOMAIN = "S-1-5-21-1-2-3"
FINANCE, CAROL = f"{DOMAIN}-1104", f"{DOMAIN}-1107"
SID_MAP = {f"{DOMAIN}-512": "group:domain-admins"}


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("smb://FS1/finance", "smb://fs1/finance"),
        ("smb://fs1:445/finance/2025/", "smb://fs1/finance/2025"),
        ("smb://fs1:4445/finance//2025 Q1", "smb://fs1:4445/finance/2025 Q1"),
        ("SMB://[FD00::5]:4445/docs", "smb://[fd00::5]:4445/docs"),
    ],
)
def test_an_smb_root_is_stored_in_one_canonical_form(url: str, canonical: str) -> None:
    assert check_roots([url]) == [canonical]


def test_a_location_names_its_files_by_url_and_back() -> None:
    location = parse_url("smb://fs1/finance/2025")
    assert location.url_of("2025/budget.xlsx") == "smb://fs1/finance/2025/budget.xlsx"
    assert location.inner("smb://fs1/finance/2025/budget.xlsx") == "2025/budget.xlsx"
    # The folder whose files give each other their document context.
    assert folder_of("smb://fs1/finance/2025/budget.xlsx") == "smb://fs1/finance/2025"
    with pytest.raises(ValueError, match="not on the share"):
        location.inner("smb://fs2/finance/2025/budget.xlsx")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("smb:///docs", "no valid server name"),
        ("smb://fs1:0/docs", "the port must be a number from 1 to 65535"),
        ("smb://fs1:http/docs", "the port must be a number from 1 to 65535"),
        ("smb://fs1/docs\\finance", "use / between folders"),
        ("smb://me:secret@fs1/docs", "set RAG_SMB__USERNAME and RAG_SMB__PASSWORD_FILE"),
        ("smb://fs1/docs/./finance", ". and .. are not allowed"),
    ],
)
def test_a_malformed_smb_root_is_refused_saying_what_to_fix(url: str, message: str) -> None:
    with pytest.raises(BadIngestRoot, match=message.replace(".", r"\.")):
        check_roots([url])


def test_no_dacl_lets_everyone_read_and_an_empty_one_nobody() -> None:
    assert descriptor_readers(descriptor(dacl=NO_DACL), SID_MAP) == {"everyone"}
    assert descriptor_readers(descriptor(), SID_MAP) == frozenset()


def test_allowed_sids_become_principals_and_well_known_accounts_give_nothing() -> None:
    acl = descriptor(
        allow(READ_DATA, "S-1-5-11"),  # Authenticated Users
        allow(READ_DATA, f"{DOMAIN}-512"),  # mapped by the SID map
        allow(READ_DATA, FINANCE),
        allow(READ_DATA, "S-1-5-18"),  # SYSTEM
        allow(READ_DATA, "S-1-5-32-544"),  # BUILTIN\Administrators
        allow(WRITE_DATA, CAROL),  # no read right
    )
    assert descriptor_readers(acl, SID_MAP) == {
        "everyone", "group:domain-admins", f"sid:{FINANCE}",
    }  # fmt: skip


def test_denied_sids_become_deny_entries_and_a_deny_of_an_unknown_class_leaves_nobody() -> None:
    acl = descriptor(
        allow(READ_DATA, FINANCE),
        deny(READ_CONTROL, CAROL),
        deny(READ_DATA, f"{DOMAIN}-512"),
        deny(READ_DATA, "S-1-1-0"),
        deny(READ_DATA, "S-1-5-18"),  # SYSTEM: no signed-in user holds it
    )
    assert descriptor_readers(acl, SID_MAP) == {
        f"sid:{FINANCE}", f"deny:sid:{CAROL}", "deny:group:domain-admins", "deny:everyone",
        "deny:sids:unknown",  # users whose SIDs are unknown may be Carol
    }  # fmt: skip
    users_denied = descriptor(allow(READ_DATA, FINANCE), deny(READ_DATA, "S-1-5-32-545"))
    assert descriptor_readers(users_denied, SID_MAP) == frozenset()


def test_a_descriptor_that_cannot_be_read_is_refused() -> None:
    with pytest.raises(UninterpretableAcl, match="the security descriptor: .*truncated"):
        descriptor_readers(b"\x01\x00", SID_MAP)
