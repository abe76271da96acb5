"""Walking a share safely: read-only, never out of the root, through loops and vanishing files.

Symbolic links are never followed: a link that points outside the ingest root would leak
another share into the index, and one that points inside it would index a file twice. Each
is recorded with its reason. Hidden folders (`.snapshot`, `.git`) are not entered: they hold
copies and history, not documents.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field


@dataclass
class CrawlResult:
    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    unreadable_folders: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason)


def storable(path: str) -> str:
    """The path itself, or, for a name that is not valid UTF-8, a stable escaped form that
    can be stored and printed (the raw bytes shown as \\xNN)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def crawl(root: str) -> CrawlResult:
    """Files under a root (or the root itself when it is a file), sorted within each folder."""
    result = CrawlResult()
    if not os.path.isdir(root):
        result.files.append(root)
        return result
    real_root = os.path.realpath(root)
    visited: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            folder_stat = os.stat(folder)
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except FileNotFoundError:
            continue  # vanished while we walked: its files count as deleted
        except OSError as exc:
            result.unreadable_folders.append((folder, f"cannot list folder: {exc.strerror}"))
            continue
        identity = (folder_stat.st_dev, folder_stat.st_ino)
        if identity in visited:
            result.skipped.append((folder, "folder already crawled (a loop in the share)"))
            continue
        visited.add(identity)
        subfolders = []
        for entry in entries:
            kind = _kind(entry)
            if kind == "link":
                result.skipped.append((entry.path, _link_reason(entry.path, real_root)))
            elif kind == "folder":
                if not entry.name.startswith("."):
                    subfolders.append(entry.path)
            elif kind == "file":
                result.files.append(entry.path)
            elif kind == "special":
                result.skipped.append((entry.path, "not a regular file"))
        stack.extend(reversed(subfolders))
    return result


def _kind(entry: os.DirEntry[str]) -> str:
    try:
        if entry.is_symlink():
            return "link"
        mode = entry.stat(follow_symlinks=False).st_mode
    except FileNotFoundError:
        return "gone"
    except OSError:
        return "special"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    return "special"


def _link_reason(path: str, real_root: str) -> str:
    target = os.path.realpath(path)
    if target != real_root and not target.startswith(real_root.rstrip("/") + "/"):
        return "symbolic link to outside the ingest root (not followed)"
    return "symbolic link (not followed; its target is crawled where it lives)"
