"""Walking a share safely: read-only, never out of the root, through loops and vanishing files.

Symbolic links are never followed: a link that points outside the ingest root would leak
another share into the index, and one that points inside it would index a file twice. Each
is recorded with its reason. Hidden folders (`.snapshot`, `.git`) are not entered: they hold
copies and history, not documents.

Each folder below the root is opened without following a link (`O_NOFOLLOW`) and must be the
folder its parent listed (the same device and inode): a folder that a link or another folder
replaced while the crawl went on is reported as unreadable this run, so what it held is kept.
The crawl records the device and inode of every file and folder it lists
(`CrawlResult.identities`): the run reads a file only if it is still that object
(`ingest.share_files`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass, field

from ingest.share_files import Identity, identity_of

FOLDER_CHANGED = (
    "folder changed while being crawled (a link or another folder took its place); "
    "run rag ingest again"
)


class _FolderChanged(Exception):
    pass


@dataclass
class CrawlResult:
    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    unreadable_folders: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason)
    identities: dict[str, Identity] = field(default_factory=dict)  # files and folders listed


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
        with contextlib.suppress(OSError):  # reading it will say why
            result.identities[root] = identity_of(os.stat(root))
        return result
    real_root = os.path.realpath(root)
    visited: set[Identity] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            identity, entries = _listing(folder, follow=folder == root)
        except FileNotFoundError:
            continue  # vanished while we walked: its files count as deleted
        except _FolderChanged:
            result.unreadable_folders.append((folder, FOLDER_CHANGED))
            continue
        except OSError as exc:
            result.unreadable_folders.append((folder, f"cannot list folder: {exc.strerror}"))
            continue
        expected = result.identities.get(folder)
        if expected is not None and identity != expected:
            result.unreadable_folders.append((folder, FOLDER_CHANGED))
            continue
        if identity in visited:
            result.skipped.append((folder, "folder already crawled (a loop in the share)"))
            continue
        visited.add(identity)
        result.identities[folder] = identity
        subfolders = []
        for name, kind, found in entries:
            path = os.path.join(folder, name)
            if kind == "link":
                result.skipped.append((path, _link_reason(path, real_root)))
            elif kind == "folder":
                if not name.startswith("."):
                    subfolders.append(path)
                    result.identities[path] = found
            elif kind == "file":
                result.files.append(path)
                result.identities[path] = found
            elif kind == "special":
                result.skipped.append((path, "not a regular file"))
        stack.extend(reversed(subfolders))
    return result


def _listing(folder: str, follow: bool) -> tuple[Identity, list[tuple[str, str, Identity]]]:
    """The folder's device and inode, and its entries sorted by name: (name, kind, device
    and inode). Raises OSError; _FolderChanged when a link or file took the folder's place."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(folder, flags)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise _FolderChanged from exc
        raise
    try:
        identity = identity_of(os.fstat(fd))
        with os.scandir(fd) as listing:
            entries = sorted((entry.name, *_kind(entry)) for entry in listing)
    finally:
        os.close(fd)
    return identity, entries


def _kind(entry: os.DirEntry[str]) -> tuple[str, Identity]:
    try:
        if entry.is_symlink():
            return "link", (0, 0)
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return "gone", (0, 0)
    except OSError:
        return "special", (0, 0)
    if stat.S_ISDIR(st.st_mode):
        return "folder", identity_of(st)
    if stat.S_ISREG(st.st_mode):
        return "file", identity_of(st)
    return "special", (0, 0)


def _link_reason(path: str, real_root: str) -> str:
    target = os.path.realpath(path)
    if target != real_root and not target.startswith(real_root.rstrip("/") + "/"):
        return "symbolic link to outside the ingest root (not followed)"
    return "symbolic link (not followed; its target is crawled where it lives)"
