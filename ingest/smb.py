"""Reading a share over the SMB protocol: no mount and no privilege, only an account that may
read the files and their permissions.

`rag ingest smb://server[:port]/share[/folder]` names a folder (or one file) on a share; names
are written as they are, with `/` between folders (no percent-encoding). The run signs in
with NTLM as `smb.username` of `smb.domain`, the password read from `smb.password_file`;
messages are signed. The URL is what the ledger, the index and citations show for each file:
`smb://fs1/finance/2025/budget.xlsx`.

The crawl lists folders depth first, each sorted by name, like the local crawler: a link or
other reparse point is recorded as skipped and not followed; a hidden folder (a name that
starts with `.`, or the hidden attribute: `.snapshot`, `$RECYCLE.BIN`) is not entered; a
folder met twice (the same file id) is a loop; a folder that cannot be listed is reported,
and what was indexed from it stays.

Each file is opened once, without following a reparse point. From that one handle come its
size and modification time (the open's answer), its security descriptor (owner, group and
DACL, `QUERY_INFO`; `ingest.permissions.descriptor_readers` turns it into principals) and,
only when the file is new or changed, its content: downloaded into a private spool folder
under the run folder while it is hashed, handed to the parser workers, and removed once
parsed (the spool folder goes at the end of the run, or at the next run after a crash).

A request the server does not answer within `smb.timeout_seconds` breaks the connection off,
so a server that stops answering never hangs a run. The file in flight fails for this run
(`cannot read: …`, its ledger row and index entries as they were); the next file reconnects.
When that fails too the share is lost for the rest of the run: its other files are not read,
what the index holds for them stays, and the next run completes them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBException, SMBResponseException
from smbprotocol.file_info import FileInformationClass, InfoType
from smbprotocol.header import NtStatus
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    DirectoryAccessMask,
    FileAttributes,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    Open,
    ShareAccess,
    SMB2QueryInfoRequest,
    SMB2QueryInfoResponse,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from ingest.crawler import CrawlResult
from ingest.errors import BadIngestRoot
from ingest.permissions import UnreadablePermissions, descriptor_readers
from ingest.share_files import FileChanged
from ingest.workers import ParseSource, private_folder_prefix, remove_abandoned_folders
from settings import SecretFileError, SmbSettings, read_secret

SCHEME = "smb://"
DEFAULT_PORT = 445
SPOOL_PREFIX = "smb-spool"

_READ_CHUNK = 1 << 20
_CREDIT_SIZE = 1 << 16  # each credit covers 64 KiB of a read
_CREDITS_ASKED = 64  # asked with every request, so a megabyte read never waits for credits
_DESCRIPTOR_BUFFER = 1 << 16
_OWNER_GROUP_DACL = 0x1 | 0x2 | 0x4  # OWNER_, GROUP_, DACL_SECURITY_INFORMATION
_SHARED = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE
_FILE_ACCESS = (
    FilePipePrinterAccessMask.FILE_READ_DATA | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES
    | FilePipePrinterAccessMask.READ_CONTROL | FilePipePrinterAccessMask.SYNCHRONIZE
)  # fmt: skip
_FOLDER_ACCESS = (
    DirectoryAccessMask.FILE_LIST_DIRECTORY | DirectoryAccessMask.FILE_READ_ATTRIBUTES
    | DirectoryAccessMask.SYNCHRONIZE
)  # fmt: skip
_ATTRIBUTES_ONLY = FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES
_GONE = frozenset({
    NtStatus.STATUS_OBJECT_NAME_NOT_FOUND, NtStatus.STATUS_OBJECT_PATH_NOT_FOUND,
    NtStatus.STATUS_NO_SUCH_FILE, NtStatus.STATUS_NOT_FOUND, NtStatus.STATUS_DELETE_PENDING,
})  # fmt: skip
# The server forgot the session or the share: the connection is as good as broken.
_SESSION_GONE = frozenset({
    NtStatus.STATUS_USER_SESSION_DELETED, NtStatus.STATUS_NETWORK_NAME_DELETED,
    0xC000035C,  # STATUS_NETWORK_SESSION_EXPIRED
})  # fmt: skip
_SIGN_IN_REFUSED = {
    NtStatus.STATUS_LOGON_FAILURE: "wrong user name or password",
    NtStatus.STATUS_WRONG_PASSWORD: "wrong password",
    NtStatus.STATUS_PASSWORD_EXPIRED: "the password has expired",
    0xC0000234: "the account is locked out",
    0xC0000072: "the account is disabled",
    0xC000006F: "the account may not sign in at this time",
}
_STATUS_NAMES: dict[int, str] = {
    value: name for name, value in vars(NtStatus).items() if name.startswith("STATUS_")
}

T = TypeVar("T")
Traceback = TracebackType | None


class SmbUnavailable(OSError):
    """The file server did not answer in time, or the connection to it broke."""

    def __init__(self, detail: str, url: str = "") -> None:
        super().__init__(errno.EIO, detail, url or None)


class ShareLost(SmbUnavailable):
    """The connection broke and could not be made again: the run leaves the share alone."""


@dataclass(frozen=True)
class SmbLocation:
    """A folder or file on a share: `smb://host[:port]/share[/path]`."""

    host: str
    port: int
    share: str
    path: str = ""  # inside the share, "/" between names, no leading or trailing "/"

    @property
    def server(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"{host}:{self.port}" if self.port != DEFAULT_PORT else host

    @property
    def url(self) -> str:
        return self.url_of(self.path)

    def url_of(self, inner: str) -> str:
        """The URL of the path `inner` of the share ("" for the share's root)."""
        share = f"{SCHEME}{self.server}/{self.share}"
        return f"{share}/{inner}" if inner else share

    def inner(self, url: str) -> str:
        """The path inside the share of a URL of this share."""
        share = self.url_of("")
        if url == share:
            return ""
        if not url.startswith(share + "/"):
            raise ValueError(f"{url} is not on the share {share}")
        return url[len(share) + 1 :]


def is_smb_url(root: str) -> bool:
    return root[: len(SCHEME)].lower() == SCHEME


def parse_url(url: str) -> SmbLocation:
    """The location a `smb://host[:port]/share[/path]` URL names. Raises BadIngestRoot saying
    what to fix."""
    form = "write it smb://server[:port]/share[/folder]"
    if not is_smb_url(url):
        raise BadIngestRoot(f"{url}: not an smb:// URL; {form}")
    rest = url[len(SCHEME) :]
    authority, _, path = rest.partition("/")
    if "@" in authority:
        raise BadIngestRoot(
            f"{url}: the URL holds an account; set RAG_SMB__USERNAME and "
            "RAG_SMB__PASSWORD_FILE instead, and remove it from the URL"
        )
    host, port = _host_and_port(url, authority, form)
    if "\\" in path:
        raise BadIngestRoot(f"{url}: use / between folders, not \\")
    names = [name for name in path.split("/") if name]
    if not names:
        raise BadIngestRoot(f"{url}: no share named; {form}")
    if any(name in (".", "..") for name in names):
        raise BadIngestRoot(f"{url}: . and .. are not allowed; name the folder itself")
    return SmbLocation(host.lower(), port, names[0], "/".join(names[1:]))


def _host_and_port(url: str, authority: str, form: str) -> tuple[str, int]:
    if authority.startswith("["):  # an IPv6 address
        host, _, after = authority[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else after
    else:
        host, _, port_text = authority.partition(":")
    if not host or not re.fullmatch(r"[A-Za-z0-9.\-:_]+", host):
        raise BadIngestRoot(f"{url}: no valid server name; {form}")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BadIngestRoot(f"{url}: the port must be a number from 1 to 65535")
    return host, int(port_text)


@dataclass(frozen=True)
class Listed:
    """A file as the crawl listed it."""

    file_id: int
    size: int
    mtime: float


class Spool:
    """The run's private folder for downloaded files (0700, under the run folder), made on
    first use and removed by `remove()`; those of runs whose process is gone are removed when
    the next one is made."""

    def __init__(self, parent: Path) -> None:
        self._parent = parent
        self._folder: str | None = None

    def new_file(self, suffix: str) -> tuple[int, str]:
        """A new private file (0600): its descriptor, open for writing, and its path."""
        if self._folder is None:
            self._parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            remove_abandoned_folders(self._parent, SPOOL_PREFIX)
            self._folder = tempfile.mkdtemp(prefix=private_folder_prefix(SPOOL_PREFIX),
                                            dir=self._parent)  # fmt: skip
        return tempfile.mkstemp(suffix=suffix, dir=self._folder)

    def remove(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


class SmbShare:
    """One ingest root on a share, for one run: a signed-in connection, the crawl, and the
    files opened for the run. `connect()` first; `close()` at the end."""

    def __init__(
        self, root: str, settings: SmbSettings, sid_map: Mapping[str, str], spool: Spool
    ) -> None:
        self.location = parse_url(root)
        self.root = self.location.url
        self._settings = settings
        self._sid_map = sid_map
        self._spool = spool
        self._connection: Connection | None = None
        self._tree: TreeConnect | None = None
        self._dropped = False  # the watchdog broke the connection off
        self.lost: str | None = None  # why the share is given up for the rest of the run
        self._root_is_folder = False
        self.listed: dict[str, Listed] = {}

    # -- connecting ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Sign in, connect to the share and check the root is there. Raises BadIngestRoot,
        one line saying what to fix."""
        url = self.root
        try:
            password = read_secret(self._settings.password_file, "RAG_SMB__PASSWORD_FILE")
        except SecretFileError as exc:
            raise BadIngestRoot(f"{url}: {exc}") from exc
        if not self._settings.username:
            raise BadIngestRoot(f"{url}: RAG_SMB__USERNAME is not set: name the account that "
                                "reads the share")  # fmt: skip
        try:
            self._sign_in(password)
        except SMBResponseException as exc:
            raise BadIngestRoot(self._sign_in_refusal(exc)) from exc
        except SmbUnavailable as exc:
            raise BadIngestRoot(
                f"{url}: {exc.strerror}; check the server name and port, and that it serves SMB"
            ) from exc
        try:
            self._check_root()
        except FileNotFoundError as exc:
            self.close()
            share = f"\\\\{self.location.host}\\{self.location.share}"
            raise BadIngestRoot(f"{url}: no such folder or file on the share {share}") from exc
        except PermissionError as exc:
            self.close()
            raise BadIngestRoot(
                f"{url}: access denied to {self._account()}; give it read access to the "
                "folder, or set RAG_SMB__USERNAME to an account that has it"
            ) from exc
        except FileChanged as exc:
            self.close()
            raise BadIngestRoot(f"{url}: a link or reparse point; name its target") from exc
        except OSError as exc:
            self.close()
            raise BadIngestRoot(f"{url}: {exc.strerror}; run rag ingest again") from exc

    def _account(self) -> str:
        domain, user = self._settings.domain, self._settings.username
        return f"{domain}\\{user}" if domain else user

    def _sign_in(self, password: str) -> None:
        location = self.location
        timeout = self._settings.timeout_seconds
        connection = Connection(uuid.uuid4(), location.host, location.port, require_signing=True)
        self._connection = connection
        self._dropped = False
        try:
            with self._deadline():
                connection.connect(timeout=max(1, int(timeout)))
            session = Session(connection, self._account(), password, require_encryption=False,
                              auth_protocol="ntlm")  # fmt: skip
            with self._deadline():
                session.connect()
            tree = TreeConnect(session, rf"\\{location.host}\{location.share}")
            with self._deadline():
                tree.connect()
        except SMBResponseException:
            self._disconnect()
            raise
        except (SMBException, OSError, ValueError) as exc:
            self._disconnect()
            raise SmbUnavailable(self._unreachable(exc), self.root) from exc
        self._tree = tree

    def _unreachable(self, exc: BaseException) -> str:
        where = self.location.server
        if self._dropped or "timeout" in str(exc).lower():
            return f"{where} did not answer within {self._settings.timeout_seconds:g}s"
        cause = exc.__cause__ if isinstance(exc, ValueError) else exc
        if isinstance(cause, OSError) and cause.errno in (-2, -3, -5):  # EAI_NONAME, AGAIN, NODATA
            return f"unknown server {self.location.host} (no such name)"
        if isinstance(cause, OSError) and cause.strerror:
            return f"cannot connect to {where} ({cause.strerror.lower()})"
        return f"the connection to {where} broke ({' '.join(str(exc).split())[:200]})"

    def _sign_in_refusal(self, exc: SMBResponseException) -> str:
        url, account = self.root, self._account()
        if exc.status in _SIGN_IN_REFUSED:
            return (f"{url}: {self.location.host} refused {account}: "
                    f"{_SIGN_IN_REFUSED[exc.status]}; check RAG_SMB__USERNAME, RAG_SMB__DOMAIN "
                    "and the password in RAG_SMB__PASSWORD_FILE")  # fmt: skip
        if exc.status == NtStatus.STATUS_BAD_NETWORK_NAME:
            return (f"{url}: {self.location.host} has no share named {self.location.share}; "
                    "check the share's name")  # fmt: skip
        if exc.status == NtStatus.STATUS_ACCESS_DENIED:
            return (
                f"{url}: the share {self.location.share} refuses {account}; give it "
                "access to the share, or set RAG_SMB__USERNAME to an account that has it"
            )
        return f"{url}: {self.location.host} refused the connection ({_status_name(exc.status)})"

    def _check_root(self) -> None:
        """Whether the root is a folder; and that the account may list it (or read it, a
        file), not only see it. Raises OSError, FileChanged for a reparse point."""
        tree = self._connected_tree()
        path = _windows_path(self.location.path)
        handle = Open(tree, path)
        self._call(handle.create(ImpersonationLevel.Impersonation, _ATTRIBUTES_ONLY, 0, _SHARED,
                                 CreateDisposition.FILE_OPEN, CreateOptions.FILE_OPEN_REPARSE_POINT,
                                 send=False), handle, self.root)  # fmt: skip
        attributes = int(handle.file_attributes)
        self._close_handle(handle)
        if attributes & FileAttributes.FILE_ATTRIBUTE_REPARSE_POINT:
            raise FileChanged("the root is a link or reparse point")
        self._root_is_folder = bool(attributes & FileAttributes.FILE_ATTRIBUTE_DIRECTORY)
        if self._root_is_folder:
            access, options = _FOLDER_ACCESS, CreateOptions.FILE_DIRECTORY_FILE
        else:
            access, options = _FILE_ACCESS, CreateOptions.FILE_NON_DIRECTORY_FILE
        handle = Open(tree, path)
        self._call(handle.create(ImpersonationLevel.Impersonation, access, 0, _SHARED,
                                 CreateDisposition.FILE_OPEN, options, send=False),
                   handle, self.root)  # fmt: skip
        self._close_handle(handle)

    def close(self) -> None:
        """Sign out and disconnect (within the timeout); the spool is the run's to remove."""
        if self._connection is not None and not self._dropped:
            with contextlib.suppress(SMBException, OSError, ValueError), self._deadline():
                self._connection.disconnect(close=True)
        self._disconnect()

    def _disconnect(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(SMBException, OSError, ValueError, AttributeError):
                self._connection.disconnect(close=False)
        self._connection = None
        self._tree = None

    # -- requests -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _deadline(self) -> Iterator[None]:
        """Breaks the connection off if what runs inside takes longer than the timeout: the
        request waiting on it then fails instead of waiting for ever."""
        timer = threading.Timer(self._settings.timeout_seconds, self._break_off)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _break_off(self) -> None:
        self._dropped = True
        connection = self._connection
        if connection is not None and connection.transport is not None:
            with contextlib.suppress(OSError):
                connection.transport.close()

    def _connected_tree(self) -> TreeConnect:
        """The share's tree, connecting again after a drop; ShareLost when that fails."""
        if self.lost is not None:
            raise ShareLost(self.lost, self.root)
        if self._tree is None or self._dropped:
            self._disconnect()
            try:
                self._sign_in(read_secret(self._settings.password_file, "RAG_SMB__PASSWORD_FILE"))
            except (SMBResponseException, SmbUnavailable, SecretFileError) as exc:
                reason = exc.strerror if isinstance(exc, SmbUnavailable) else str(exc)
                self.lost = f"the share could not be reached again ({reason})"
                raise ShareLost(self.lost, self.root) from exc
        assert self._tree is not None
        return self._tree

    def _call(self, request: tuple[Any, Callable[[Any], T]], handle: Open, url: str) -> T:
        """Send a request about `handle` built by smbprotocol (`send=False`) and wait for its
        answer within the timeout. Raises FileNotFoundError, PermissionError or OSError for the
        status the server answered; SmbUnavailable when it did not answer, the connection
        broke, or broke since the handle was opened."""
        message, receive = request
        tree = self._tree
        if self._dropped or tree is None or handle.tree_connect is not tree:
            raise SmbUnavailable(f"the connection to {self.location.server} broke", url)
        connection = tree.session.connection
        try:
            with self._deadline():
                sent = connection.send(message, sid=tree.session.session_id,
                                       tid=tree.tree_connect_id,
                                       credit_request=_CREDITS_ASKED)  # fmt: skip
                return receive(sent)
        except SMBResponseException as exc:
            if exc.status in _SESSION_GONE:
                self._dropped = True
                reason = f"{self.location.server} ended the session ({_status_name(exc.status)})"
                raise SmbUnavailable(reason, url) from exc
            if self._dropped:
                raise SmbUnavailable(self._unreachable(exc), url) from exc
            raise _status_error(exc, url) from exc
        except (SMBException, OSError, ValueError) as exc:
            self._dropped = True
            raise SmbUnavailable(self._unreachable(exc), url) from exc

    def _close_handle(self, handle: Open) -> None:
        if self._dropped or handle.tree_connect is not self._tree:
            return  # the handle went with the connection
        with contextlib.suppress(OSError):
            self._call(handle.close(send=False), handle, "")

    # -- the crawl ----------------------------------------------------------------------------

    def crawl(self) -> CrawlResult:
        """Files under the root (or the root itself when it is a file), by the rule in the
        module's docstring; `listed` keeps each file's id, size and modification time."""
        result = CrawlResult()
        if not self._root_is_folder:
            result.files.append(self.root)
            return result
        visited: set[int] = set()
        stack = [self.location.path]
        while stack:
            folder = stack.pop()
            url = self.location.url_of(folder)
            try:
                folder_id, entries = self._listing(folder, url)
            except FileNotFoundError:
                continue  # vanished while we walked: its files count as deleted
            except OSError as exc:
                result.unreadable_folders.append((url, f"cannot list folder: {exc.strerror}"))
                continue
            if folder_id in visited:
                result.skipped.append((url, "folder already crawled (a loop in the share)"))
                continue
            visited.add(folder_id)
            subfolders = []
            for name, attributes, listed in entries:
                inner = f"{folder}/{name}" if folder else name
                child = self.location.url_of(inner)
                if attributes & FileAttributes.FILE_ATTRIBUTE_REPARSE_POINT:
                    result.skipped.append((child, "link or reparse point (not followed)"))
                elif attributes & FileAttributes.FILE_ATTRIBUTE_DIRECTORY:
                    hidden = attributes & FileAttributes.FILE_ATTRIBUTE_HIDDEN
                    if not name.startswith(".") and not hidden:
                        subfolders.append(inner)
                else:
                    result.files.append(child)
                    self.listed[child] = listed
            stack.extend(reversed(subfolders))
        return result

    def _listing(self, folder: str, url: str) -> tuple[int, list[tuple[str, int, Listed]]]:
        """The folder's file id and its entries sorted by name: (name, attributes, listing)."""
        handle = Open(self._connected_tree(), _windows_path(folder))
        self._call(handle.create(ImpersonationLevel.Impersonation, _FOLDER_ACCESS,
                                 FileAttributes.FILE_ATTRIBUTE_DIRECTORY, _SHARED,
                                 CreateDisposition.FILE_OPEN,
                                 CreateOptions.FILE_DIRECTORY_FILE
                                 | CreateOptions.FILE_OPEN_REPARSE_POINT, send=False),
                   handle, url)  # fmt: skip
        folder_id = -1
        entries = []
        try:
            while True:
                try:
                    found = self._call(handle.query_directory(
                        "*", FileInformationClass.FILE_ID_FULL_DIRECTORY_INFORMATION, send=False
                    ), handle, url)  # fmt: skip
                except OSError as exc:
                    if getattr(exc, "status", None) == NtStatus.STATUS_NO_MORE_FILES:
                        break
                    raise
                for entry in found:
                    name = entry["file_name"].get_value().decode("utf-16-le", "surrogatepass")
                    listed = Listed(entry["file_id"].get_value(), entry["end_of_file"].get_value(),
                                    entry["last_write_time"].get_value().timestamp())  # fmt: skip
                    if name == ".":
                        folder_id = listed.file_id
                    elif name != "..":
                        entries.append((name, entry["file_attributes"].get_value(), listed))
        finally:
            self._close_handle(handle)
        return folder_id, sorted(entries)

    # -- files --------------------------------------------------------------------------------

    def open(self, url: str) -> SmbFile:
        """The file at `url`, opened for this run. Raises FileNotFoundError when it is gone,
        PermissionError when the account may not open it, FileChanged when a folder or a
        reparse point took its place, SmbUnavailable (ShareLost) when the server is not
        there."""
        handle = Open(self._connected_tree(), _windows_path(self.location.inner(url)))
        try:
            self._call(handle.create(ImpersonationLevel.Impersonation, _FILE_ACCESS, 0, _SHARED,
                                     CreateDisposition.FILE_OPEN,
                                     CreateOptions.FILE_NON_DIRECTORY_FILE
                                     | CreateOptions.FILE_OPEN_REPARSE_POINT, send=False),
                       handle, url)  # fmt: skip
        except OSError as exc:
            if getattr(exc, "status", None) == NtStatus.STATUS_FILE_IS_A_DIRECTORY:
                raise FileChanged("it is a folder now") from exc
            raise
        if int(handle.file_attributes) & FileAttributes.FILE_ATTRIBUTE_REPARSE_POINT:
            self._close_handle(handle)
            raise FileChanged("a link or reparse point took its place after the crawl "
                              "(not followed)")  # fmt: skip
        return SmbFile(self, handle, url)

    def security_descriptor(self, handle: Open, url: str) -> bytes:
        """The file's self-relative security descriptor: owner, group and DACL."""
        query = SMB2QueryInfoRequest()
        query["info_type"] = InfoType.SMB2_0_INFO_SECURITY
        query["output_buffer_length"] = _DESCRIPTOR_BUFFER
        query["additional_information"] = _OWNER_GROUP_DACL
        query["file_id"] = handle.file_id

        def answer(sent: Any) -> bytes:
            response = SMB2QueryInfoResponse()
            response.unpack(handle.connection.receive(sent)["data"].get_value())
            return bytes(response["buffer"].get_value())

        return self._call((query, answer), handle, url)

    def download(self, handle: Open, url: str, suffix: str) -> tuple[str, str]:
        """The file's content as the open found it (its size then: bytes written since are
        read by the next run, which sees the new size), copied into the spool: (the copy's
        path, its SHA-256). Raises OSError, SmbUnavailable; leaves no copy behind then."""
        fd, copy = self._spool.new_file(suffix)
        digest = hashlib.sha256()
        size = int(handle.end_of_file)
        try:
            with open(fd, "wb") as target:
                offset = 0
                while offset < size:
                    try:
                        length = min(size - offset, self._chunk(handle))
                        data = self._call(handle.read(offset, length, send=False), handle, url)
                    except OSError as exc:
                        if getattr(exc, "status", None) == NtStatus.STATUS_END_OF_FILE:
                            break
                        raise
                    if not data:
                        break
                    digest.update(data)
                    target.write(data)
                    offset += len(data)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(copy)
            raise
        return copy, digest.hexdigest()

    def _chunk(self, handle: Open) -> int:
        connection = handle.connection
        credits: int = connection.sequence_window["high"] - connection.sequence_window["low"]
        return max(1, min(_READ_CHUNK, int(connection.max_read_size), credits * _CREDIT_SIZE))

    def readers(self, descriptor: bytes) -> frozenset[str]:
        return descriptor_readers(descriptor, self._sid_map)


class SmbFile:
    """A file of a share opened for the run (`ingest.pipeline.SourceFile`): its size and
    modification time from the open, its readers from its security descriptor, its content
    downloaded once into the spool. Closing it closes the handle and removes the download,
    unless `keep_content()` handed it to the parsers (who remove it once read)."""

    def __init__(self, share: SmbShare, handle: Open, url: str) -> None:
        self._share = share
        self._handle = handle
        self.path = url
        self.size = int(handle.end_of_file)
        self.mtime = handle.last_write_time.timestamp()
        self._copy: str | None = None
        self._kept = False

    def readers(self) -> frozenset[str]:
        """Raises UnreadablePermissions when the server refuses the descriptor or it cannot
        be interpreted; SmbUnavailable when the server did not answer."""
        try:
            descriptor = self._share.security_descriptor(self._handle, self.path)
        except SmbUnavailable:
            raise
        except OSError as exc:
            raise UnreadablePermissions(
                f"cannot read the file's security descriptor ({exc.strerror})"
            ) from exc
        return self._share.readers(descriptor)

    def content_sha256(self) -> str:
        if self._copy is not None:
            raise RuntimeError("the content was downloaded already")
        sha256: str
        self._copy, sha256 = self._share.download(self._handle, self.path, Path(self.path).suffix)
        return sha256

    def parse_source(self, sha256: str) -> ParseSource:
        return ParseSource(self.path, self._share.root, (0, 0), sha256, spooled=self._copy)

    def keep_content(self) -> None:
        self._kept = True

    def close(self) -> None:
        self._share._close_handle(self._handle)
        if self._copy is not None and not self._kept:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._copy)

    def __enter__(self) -> SmbFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Traceback
    ) -> None:
        self.close()


def _windows_path(inner: str) -> str:
    return inner.replace("/", "\\")


def _status_name(status: int) -> str:
    return _STATUS_NAMES.get(status, f"0x{status:08X}")


def _status_error(exc: SMBResponseException, url: str) -> OSError:
    """The OSError a status the server answered means; its `status` attribute keeps it."""
    error: OSError
    if exc.status in _GONE:
        error = FileNotFoundError(errno.ENOENT, "no such file or folder", url)
    elif exc.status == NtStatus.STATUS_ACCESS_DENIED:
        error = PermissionError(errno.EACCES, "access denied", url)
    else:
        error = OSError(errno.EIO, f"the server answered {_status_name(exc.status)}", url)
    error.status = exc.status  # type: ignore[attr-defined]
    return error
