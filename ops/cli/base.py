"""What every `rag` command shares: how it registers, how it fails, and the application layer
it calls.

A command registers its parser, its handler (arguments and settings in, one JSON-able dict
out) and its printer (that dict for a terminal) in one place, `add_command`. A handler fails by
raising; `exit_status` maps every error, at this one edge, to the exit status and the one line
the operator reads (CONTRACT.md): 0 done, 1 the command ran but failed, 2 bad arguments or an
unusable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from retrieval.store import SearchFilters
from settings import Settings

if TYPE_CHECKING:
    from appliance.core import Appliance

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Result = dict[str, Any]
Handler = Callable[[argparse.Namespace, Settings], Result]
Printer = Callable[[Result], None]
Status = Callable[[Result], int]


class UsageError(Exception):
    """Bad arguments or an unusable input: exit status 2."""


class CommandFailed(Exception):
    """The command ran but could not do its job: exit status 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def print_json(result: Result) -> None:
    if result:
        print(json.dumps(result, indent=2, ensure_ascii=False))


def done(result: Result) -> int:
    return EXIT_OK


def add_command(
    commands: Any,
    name: str,
    common: argparse.ArgumentParser,
    help: str,
    handler: Handler,
    printer: Printer = print_json,
    status: Status = done,
) -> argparse.ArgumentParser:
    """A command: its parser (to which the caller adds arguments), handler and printer, and
    the exit status its result means (0 unless `status` says otherwise)."""
    parser: argparse.ArgumentParser = commands.add_parser(name, parents=[common], help=help)
    parser.set_defaults(handler=handler, printer=printer, status=status)
    return parser


def add_group(commands: Any, name: str, help: str) -> Any:
    """A command with subcommands (`rag users add`)."""
    group = commands.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True, parser_class=Parser)


_built: Appliance | None = None


def appliance(settings: Settings) -> Appliance:
    """The application layer, built once for this command from its settings; its parts load
    on first use."""
    global _built
    if _built is None or _built.settings is not settings:
        from appliance.core import Appliance
        from appliance.root import Parts

        _built = Appliance(Parts(settings))
    return _built


def filters(args: argparse.Namespace) -> SearchFilters:
    try:
        return SearchFilters.parse(args.filter)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def add_filter_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                        help="folder=/abs/path, type=pdf, language=fr, modified_after=2025-01-01,"
                        " modified_before=...; repeatable, all must hold")  # fmt: skip


def stage_printer(args: argparse.Namespace) -> Callable[[str], None]:
    """What a long command is doing, on a terminal's stderr."""
    if args.json or not sys.stderr.isatty():
        return lambda stage: None
    return lambda stage: print(f"rag {args.command}: {stage}", file=sys.stderr, flush=True)


def exit_status(exc: Exception) -> tuple[int, str]:
    """The exit status and the one line an error means to the operator."""
    from pydantic import ValidationError

    from appliance.errors import ApplianceError, BadRequest
    from ingest.errors import IngestError
    from llm.errors import LLMError
    from ops.processes import ServiceError
    from retrieval.errors import QueryTooLong, RetrievalError

    if isinstance(exc, UsageError | BadRequest | QueryTooLong):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return EXIT_USAGE, f"invalid setting RAG_{where.upper()}: {first['msg']}"
    if isinstance(exc, LLMError):
        return EXIT_FAILED, f"{exc}; start it with `rag up` or check RAG_LLM__BASE_URL"
    if isinstance(
        exc, ApplianceError | IngestError | RetrievalError | ServiceError | CommandFailed
    ):
        return EXIT_FAILED, str(exc)
    return EXIT_FAILED, f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
