"""Opening a crawled file so that its path is trusted once, not at every read.

Between the crawl and the read, anyone who may write in a folder of the share can put a
symbolic link, a FIFO or another file in a file's place, or a link in a folder's place. A file
is therefore opened once, name by name from its ingest root: each folder with
`O_NOFOLLOW | O_DIRECTORY` relative to the handle of the folder above it, the file with
`O_NOFOLLOW | O_NONBLOCK` (a FIFO does not block the open), each then `fstat`ed. Every object
opened must be the one the crawl saw (the same device and inode), every folder a folder and
the file a regular file; otherwise `FileChanged` says what took its place and the file is not
read this run. The root itself is opened as given: an operator may name a link as a root.

What the run knows of a file then comes from these handles alone: its permissions (owner,
mode and ACL attributes of the file and of every folder above it, `ingest.permissions`), its
hash, and the bytes the parser reads (`ingest.workers` opens the file the same way and checks
its device, inode and hash against what the run checked).

Nothing inside the appliance's own data folder is opened (`InsideDataFolder`): neither under
a folder with the data folder's device and inode, nor under a root inside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from types import TracebackType

from ingest.errors import IngestError

Identity = tuple[int, int]  # (st_dev, st_ino)
Traceback = TracebackType | None

# Every reason FileChanged gives starts so; the pipeline tries such files again each run.
CHANGED_WHILE_READ = "changed while being read"

_ROOT_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FOLDER = _ROOT_FOLDER | os.O_NOFOLLOW
_ROOT_FILE = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_FILE = _ROOT_FILE | os.O_NOFOLLOW


def identity_of(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino)


class FileChanged(IngestError):
    """The file, or a folder above it, is no longer what the crawl saw."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{CHANGED_WHILE_READ}: {detail}; run rag ingest again")


class InsideDataFolder(IngestError):
    """The file is in the appliance's own data folder: it is never indexed."""

    def __init__(self) -> None:
        super().__init__("inside the appliance's data folder (never indexed)")


@dataclass(frozen=True)
class Handle:
    """An open file or folder: its path as crawled, its descriptor, and its fstat."""

    path: str
    fd: int
    st: os.stat_result

    @property
    def identity(self) -> Identity:
        return identity_of(self.st)

    def path_of(self, name: str) -> str:
        """The path of `name` in this folder, as the crawl writes it."""
        return os.path.join(self.path, name)


@dataclass(frozen=True)
class OpenedFile:
    """A file opened safely, and the folders from the root down to its own (none when the
    root is the file). Closing it closes the file; the folders belong to the opener."""

    file: Handle
    folders: tuple[Handle, ...]

    def close(self) -> None:
        os.close(self.file.fd)

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Traceback
    ) -> None:
        self.close()


class ShareOpener:
    """Opens files under one ingest root, by the rule in the module's docstring. The folders
    above the last file opened stay open for the next one (the crawl lists a folder's files
    together): at most one handle per level of the tree, released by `close()`."""

    def __init__(
        self,
        root: str,
        crawled: dict[str, Identity] | None = None,
        data_folder: str | os.PathLike[str] | None = None,
    ) -> None:
        """`crawled`: the device and inode the crawl saw at each path (a path missing is
        not checked); `data_folder`: a folder whose files are never opened."""
        self._root = root
        self._crawled = crawled or {}
        self._chain: list[Handle] = []  # the root, then the folders of the last file opened
        self._data_folder: Identity | None = None
        self._root_in_data_folder = False
        if data_folder is not None:
            with contextlib.suppress(FileNotFoundError):
                self._data_folder = identity_of(os.stat(data_folder))
            data = os.path.realpath(data_folder)
            real_root = os.path.realpath(root)
            self._root_in_data_folder = real_root == data or real_root.startswith(
                data.rstrip("/") + "/"
            )

    @property
    def root(self) -> str:
        return self._root

    def open(self, path: str) -> OpenedFile:
        """The file at `path` (the root or a path under it), opened. Raises FileChanged,
        InsideDataFolder, FileNotFoundError when it or a folder above it is gone, and
        OSError (its `filename` the path that could not be opened)."""
        if self._root_in_data_folder:
            raise InsideDataFolder()
        if path == self._root:
            return OpenedFile(self._checked(self._open_root(_ROOT_FILE), "file"), ())
        prefix = self._root.rstrip("/") + "/"
        if not path.startswith(prefix):
            raise ValueError(f"{path} is not under the ingest root {self._root}")
        *folders, name = path[len(prefix) :].split("/")
        chain = self._folders(folders)
        parent = chain[-1]
        fd = self._open_at(parent, name, _FILE, "file")
        return OpenedFile(self._checked(Handle(parent.path_of(name), fd, os.fstat(fd)), "file"),
                          tuple(chain))  # fmt: skip

    def close(self) -> None:
        self._release(0)

    def __enter__(self) -> ShareOpener:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Traceback
    ) -> None:
        self.close()

    def _folders(self, names: list[str]) -> list[Handle]:
        """The root and the folders `names` below it, each open; those already open from the
        last file are kept, the others closed."""
        if not self._chain:
            self._chain.append(self._checked(self._open_root(_ROOT_FOLDER), "folder"))
        kept = 1
        while (
            kept < len(self._chain)
            and kept <= len(names)
            and self._chain[kept].path == self._chain[kept - 1].path_of(names[kept - 1])
        ):
            kept += 1
        self._release(kept)
        for name in names[kept - 1 :]:
            parent = self._chain[-1]
            fd = self._open_at(parent, name, _FOLDER, "folder")
            self._chain.append(self._checked(Handle(parent.path_of(name), fd, os.fstat(fd)),
                                             "folder"))  # fmt: skip
        return self._chain

    def _release(self, keep: int) -> None:
        while len(self._chain) > keep:
            os.close(self._chain.pop().fd)

    def _open_root(self, flags: int) -> Handle:
        try:
            fd = os.open(self._root, flags)
        except OSError as exc:
            if exc.errno == errno.ENOTDIR:
                raise FileChanged(f"the ingest root {self._root} is no longer a folder") from exc
            raise
        return Handle(self._root, fd, os.fstat(fd))

    def _open_at(self, parent: Handle, name: str, flags: int, kind: str) -> int:
        path = parent.path_of(name)
        try:
            return os.open(name, flags, dir_fd=parent.fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                exc.filename = path
                raise
            try:
                now = os.stat(name, dir_fd=parent.fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from exc
            what = "it" if kind == "file" else f"folder {path}"
            if stat.S_ISLNK(now):
                raise FileChanged(
                    f"a symbolic link took the place of {what} after the crawl (not followed)"
                ) from exc
            raise FileChanged(f"{what} is no longer a {kind}") from exc

    def _checked(self, handle: Handle, kind: str) -> Handle:
        """The handle, if it is the crawl's object of the right kind; else closed, raising."""
        try:
            if kind == "file" and not stat.S_ISREG(handle.st.st_mode):
                raise FileChanged("not a regular file any more (a FIFO, device or folder)")
            if kind == "folder" and handle.identity == self._data_folder:
                raise InsideDataFolder()
            expected = self._crawled.get(handle.path)
            if expected is not None and expected != handle.identity:
                what = "it" if kind == "file" else f"folder {handle.path}"
                raise FileChanged(f"another {kind} took the place of {what} after the crawl")
        except BaseException:
            os.close(handle.fd)
            raise
        return handle
