"""Crawling a share: links not followed, loops survived, unreadable folders reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import crawler
from ingest.crawler import FOLDER_CHANGED, crawl, storable
from settings import PROJECT_ROOT


@pytest.fixture
def share(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "doc.md").write_text("x")
    (root / "a" / "b" / "deep.txt").write_text("y")
    (root / "top.pdf").write_text("z")
    return root


def test_files_are_found_in_every_folder(share: Path) -> None:
    result = crawl(str(share))
    assert sorted(result.files) == sorted(
        str(share / p) for p in ("a/doc.md", "a/b/deep.txt", "top.pdf")
    )
    assert result.skipped == [] and result.unreadable_folders == []


def test_links_are_never_followed_and_say_why(share: Path, tmp_path: Path) -> None:
    outside = tmp_path / "other-share"
    outside.mkdir()
    (outside / "secret.md").write_text("s")
    (share / "escape").symlink_to(outside)
    (share / "escape.md").symlink_to(outside / "secret.md")
    (share / "alias.md").symlink_to(share / "a" / "doc.md")
    (share / "a" / "loop").symlink_to(share)
    result = crawl(str(share))
    assert not any("secret" in f or "alias" in f or "loop" in f for f in result.files)
    reasons = {Path(path).name: reason for path, reason in result.skipped}
    assert "outside the ingest root" in reasons["escape"]
    assert "outside the ingest root" in reasons["escape.md"]
    assert "its target is crawled where it lives" in reasons["alias.md"]
    assert "its target is crawled where it lives" in reasons["loop"]


def test_a_very_deep_tree_is_walked(tmp_path: Path) -> None:
    folder = tmp_path / "deep"
    for _ in range(400):
        folder = folder / "d"
    folder.mkdir(parents=True)
    (folder / "bottom.md").write_text("x")
    assert crawl(str(tmp_path / "deep")).files == [str(folder / "bottom.md")]


def test_hidden_folders_are_not_entered_but_hidden_files_are_seen(share: Path) -> None:
    (share / ".snapshot").mkdir()
    (share / ".snapshot" / "old.md").write_text("old")
    (share / ".notes.md").write_text("n")
    files = crawl(str(share)).files
    assert str(share / ".notes.md") in files
    assert not any(".snapshot" in f for f in files)


def test_special_files_are_skipped(share: Path) -> None:
    os.mkfifo(share / "pipe")
    assert crawl(str(share)).skipped == [(str(share / "pipe"), "not a regular file")]


def test_a_name_that_is_not_utf8_gets_a_storable_form(tmp_path: Path) -> None:
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.md")
    Path(os.fsdecode(raw)).write_text("x")
    (found,) = crawl(str(tmp_path)).files
    shown = storable(found)
    assert shown.endswith("caf\\xe9.md")
    shown.encode("utf-8")
    assert storable(str(tmp_path / "café.md")) == str(tmp_path / "café.md")


def test_a_folder_swapped_for_a_link_during_the_crawl_is_not_listed_through_it(
    share: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    restricted = tmp_path / "restricted"
    restricted.mkdir()
    (restricted / "salaries.md").write_text("s")
    real_kind = crawler._kind

    def swap_when_listed(entry: os.DirEntry[str]) -> object:
        found = real_kind(entry)
        if entry.name == "a" and not (share / "a").is_symlink():  # listed, not yet entered
            (share / "a").rename(tmp_path / "a-moved-away")
            (share / "a").symlink_to(restricted)
        return found

    monkeypatch.setattr(crawler, "_kind", swap_when_listed)
    result = crawl(str(share))
    assert not any("salaries" in path for path in result.files)
    assert result.unreadable_folders == [(str(share / "a"), FOLDER_CHANGED)]
    assert result.files == [str(share / "top.pdf")]
    assert set(result.identities) == {str(share), str(share / "a"), str(share / "top.pdf")}


def as_root_without_file_permission_override(*command: str) -> list[str]:
    """Root reads everything; without these two capabilities it meets permissions like
    anyone else (setpriv is in util-linux)."""
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop file-permission override")
def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_crawled(tmp_path: Path) -> None:
    share = tmp_path / "share"
    (share / "open").mkdir(parents=True)
    (share / "locked").mkdir()
    (share / "open" / "a.md").write_text("a")
    (share / "locked" / "b.md").write_text("b")
    (share / "locked").chmod(0o000)
    script = (
        "import json, sys; from ingest.crawler import crawl; r = crawl(sys.argv[1]); "
        "print(json.dumps([r.files, r.unreadable_folders]))"
    )
    try:
        output = subprocess.run(
            as_root_without_file_permission_override(sys.executable, "-c", script, str(share)),
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        (share / "locked").chmod(0o755)
    files, unreadable = json.loads(output)
    assert files == [str(share / "open" / "a.md")]
    assert unreadable == [[str(share / "locked"), "cannot list folder: Permission denied"]]
