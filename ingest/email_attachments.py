"""The files attached to an e-mail (.eml, .msg): each one is a document of its own.

A message's parser reads its body; the files attached to it are returned here as
(name, content), and `ingest.parsers.parse` parses each like any other file. A name is the
attachment's own file name without any folder part (a crafted name cannot point outside a
folder it is saved to), or `attachment-N` where the message gives none. An image that the
HTML body shows (by its Content-ID) or that is marked `inline` belongs to the body, not to
the attachments; a forwarded message attached whole comes back as an `.eml` file.
"""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage, MIMEPart
from pathlib import Path
from typing import cast

from ingest.errors import ParseError

# An HTML body shows a part of its message by `src="cid:ID"`, the part's Content-ID.
_CID_REFERENCE = re.compile(r"cid:([^\s\"'<>)]+)", re.IGNORECASE)
# PidTagAttachFilename: the short (8.3) name, where a message has no long one.
_PID_ATTACH_FILENAME = 0x3704


def attachments(path: Path) -> list[tuple[str, bytes]]:
    """(name, content) of each file attached to the message at `path`, in message order."""
    suffix = path.suffix.lower()
    if suffix not in (".eml", ".msg"):
        raise ParseError(str(path), f"not an e-mail: {suffix or '(none)'}")
    try:
        found = _eml_attachments(path) if suffix == ".eml" else _msg_attachments(path)
    except Exception as exc:  # readers raise many kinds; the message fails, the run goes on
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ParseError(str(path), f"{type(exc).__name__}: {reason}") from exc
    return [(_safe_name(name, index), content) for index, (name, content) in enumerate(found, 1)]


def _eml_attachments(path: Path) -> list[tuple[str | None, bytes]]:
    with path.open("rb") as file:
        message = email.message_from_binary_file(file, policy=policy.default)
    body = message.get_body(preferencelist=("plain", "html"))
    shown = {
        cid
        for part in message.walk()
        if part.get_content_type() == "text/html"
        for cid in _CID_REFERENCE.findall(_text(cast(MIMEPart, part)))
    }
    found: list[tuple[str | None, bytes]] = []
    _collect(message, body, shown, found)
    return found


def _text(part: MIMEPart) -> str:
    try:
        return cast(str, part.get_content())
    except (LookupError, ValueError):
        return cast(bytes, part.get_payload(decode=True) or b"").decode("utf-8", "replace")


def _collect(
    part: MIMEPart,
    body: MIMEPart | None,
    shown: set[str],
    found: list[tuple[str | None, bytes]],
) -> None:
    disposition = part.get_content_disposition()
    name = part.get_filename()
    shown_in_body = str(part.get("Content-ID", "")).strip().strip("<>") in shown
    if (
        part is not body
        and not shown_in_body
        and (disposition == "attachment" or (name and disposition != "inline"))
    ):
        if part.get_content_type() == "message/rfc822":
            inner = cast(EmailMessage, part.get_content())
            subject = str(inner.get("Subject", "")).strip()
            found.append((name or f"{subject or 'message'}.eml", inner.as_bytes()))
        else:
            found.append((name, cast(bytes, part.get_payload(decode=True) or b"")))
        return
    if part.is_multipart():
        for child in cast(list[MIMEPart], part.get_payload()):
            _collect(child, body, shown, found)


def _msg_attachments(path: Path) -> list[tuple[str | None, bytes]]:
    from oxmsg import Message as OutlookMessage

    message = OutlookMessage.load(str(path))
    found: list[tuple[str | None, bytes]] = []
    for attachment in message.attachments:
        content = attachment.file_bytes
        if content is None:  # attached by reference (a path or link) or an embedded object
            continue
        name = attachment.file_name or attachment.properties.str_prop_value(_PID_ATTACH_FILENAME)
        found.append((name, content))
    return found


def _safe_name(name: str | None, index: int) -> str:
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].replace("\0", "").strip()
    return base if base and base not in (".", "..") else f"attachment-{index}"
