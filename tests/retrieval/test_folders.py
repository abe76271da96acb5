"""The folders a file is filed under, for the folder filter: local paths and smb:// URLs."""

from retrieval.store import folders_above


def test_a_local_path_lists_every_folder_up_to_the_root() -> None:
    expected = ["/srv/shares/hr", "/srv/shares", "/srv", "/"]
    assert folders_above("/srv/shares/hr/plan.odt") == expected


def test_a_share_read_over_smb_keeps_its_scheme_and_server() -> None:
    assert folders_above("smb://fs1:4450/docs/hr/plan.odt") == [
        "smb://fs1:4450/docs/hr", "smb://fs1:4450/docs", "smb://fs1:4450",
    ]  # fmt: skip
