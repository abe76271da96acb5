"""The `rag` command: the appliance's operator interface (see CONTRACT.md).

Each area registers its commands (`ops.cli.documents`, `questions`, `accounts`, `records`,
`running`, `backups`); this module parses, runs the one command asked for, prints its result
(one JSON object on stdout with --json, else the command's own printer) and turns any error
into its exit status and one line on stderr (`ops.cli.base.exit_status`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator

from settings import Settings, enforce_offline, protect_state

enforce_offline()  # before any library that could reach a hub or send telemetry is imported

from ops.cli import accounts, backups, documents, questions, records, running  # noqa: E402
from ops.cli.base import Parser, exit_status  # noqa: E402

AREAS = (documents, questions, accounts, records, running, backups)


class _JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLogFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    for noisy in ("pdfminer", "unstructured", "httpx", "sentence_transformers", "pypdf"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    rag = Parser(prog="rag", description="Operate the on-premises document Q&A appliance.")
    commands = rag.add_subparsers(dest="command", required=True, parser_class=Parser)
    for area in AREAS:
        area.register(commands, common)
    return rag


def _error_exit(args: argparse.Namespace, code: int, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    print(f"rag: {message}", file=sys.stderr)
    return code


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """Keep stray library prints off stdout, which carries exactly one JSON object."""
    if not active:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _configure_logging()
    try:
        settings = Settings()
        protect_state(settings.data_dir)  # before anything is created; children inherit it
        with _stdout_to_stderr(args.json):
            result = args.handler(args, settings)
    except KeyboardInterrupt:
        return _error_exit(args, 130, "interrupted")
    except Exception as exc:  # every failure becomes one line, never a traceback
        code, message = exit_status(exc)
        logging.getLogger("rag").debug("command failed", exc_info=True)
        return _error_exit(args, code, message)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        args.printer(result)
    return int(args.status(result))
