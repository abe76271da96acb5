"""An unexpected failure while a page is drawn: the user sees one line, the log the rest.

The line is translated and names an incident id (8 hex digits) that the administrator finds
in the log. The log line is JSON on stderr, as the other entry points log, and holds the same
id, the exception's type and its stack (file, line and function of each frame), never the
exception's message: that may quote a document, a question or a secret.

Streamlit's own view of an uncaught exception (its traceback in the browser) is turned off
where it is started (`--client.showErrorDetails none`); this module keeps even the page's
generic error box from showing.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import sys
import traceback
from collections.abc import Callable
from typing import ParamSpec

import streamlit as st

from ui.i18n import DEFAULT_LANGUAGE, translate
from ui.session import t

log = logging.getLogger(__name__)
P = ParamSpec("P")


class JsonLines(logging.Formatter):
    """A record as one JSON object on one line, with its incident fields when it has them."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("incident", "error", "stack"):
            if hasattr(record, field):
                line[field] = getattr(record, field)
        return json.dumps(line, ensure_ascii=False)


def log_as_json_lines() -> None:
    """Send the app's log records (not Streamlit's own) to stderr as JSON lines, warnings
    and worse; a process whose logging is set up already (a test run) keeps its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


def shown_as_incident(render: Callable[P, None]) -> Callable[P, None]:
    """`render`, drawing one translated error line instead of the exception it raises.
    Streamlit's rerun and stop go through: they are not exceptions (`BaseException`)."""

    @functools.wraps(render)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            render(*args, **kwargs)
        except Exception as exc:
            st.error(_line(report(exc)))

    return guarded


def report(exc: BaseException) -> str:
    """Log the exception's type and stack under a new incident id; returns the id."""
    incident = secrets.token_hex(4)
    stack = [
        f"{frame.filename}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)
    ]
    log.error(
        "unexpected error while drawing a page: incident %s, %s",
        incident,
        type(exc).__name__,
        extra={"incident": incident, "error": type(exc).__name__, "stack": stack},
    )
    return incident


def _line(incident: str) -> str:
    try:  # in the session's language, unless finding that is what failed
        return t("unexpected_error", incident=incident)
    except Exception:
        return translate("unexpected_error", DEFAULT_LANGUAGE, incident=incident)
