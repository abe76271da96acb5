"""The `rag` command: the appliance's operator interface (see CONTRACT.md).

Exit status: 0 done; 1 the command ran but failed; 2 bad arguments or an unusable input.
With --json a command prints exactly one JSON object on stdout; logs and errors go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from appliance.actor import Actor
from appliance.audit import printable
from retrieval.access import Scope
from retrieval.store import SearchFilters
from settings import Settings, enforce_offline, protect_state

if TYPE_CHECKING:
    from appliance.core import Appliance

enforce_offline()  # before any library that could reach a hub or send telemetry is imported

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# `rag ingest --watch` keeps its pass's progress here; `rag metrics` reads the queue from it.
WATCH_PROGRESS = "ingest-watch.progress.json"


class UsageError(Exception):
    """Bad arguments or an unusable input: exit status 2."""


class CommandFailed(Exception):
    """The command ran but could not do its job: exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


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


# -- commands --------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from ingest.errors import BadIngestRoot
    from ingest.pipeline import check_roots
    from ingest.progress_file import FileProgress
    from ops.progress import TerminalProgress

    try:
        check_roots(args.paths)
    except BadIngestRoot as exc:
        raise UsageError(f"{exc}; give a folder or file that exists") from exc
    progress: TerminalProgress | FileProgress | None = None
    if args.progress_file is not None:
        progress = FileProgress(args.progress_file)
    elif not args.json and sys.stderr.isatty():
        progress = TerminalProgress()
    workers = args.workers
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.watch is not None and args.rebuild:
        raise UsageError("--rebuild reads everything once; run it without --watch first")
    if args.watch is None:
        report = _appliance(settings).ingest(
            Actor.operator(), args.paths, progress=progress, workers=workers,
            retry_failed=args.retry_failed, rebuild=args.rebuild,
        )  # fmt: skip
        return report.as_json()
    from ingest.build import build_ingestor
    from ops.watch import watch

    watch(
        build_ingestor(settings), args.paths, args.watch, workers, settings.run_dir / WATCH_PROGRESS
    )
    return {}


def cmd_erase(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if (args.path is None) == (args.doc_id is None):
        raise UsageError("give the PATH of the file to erase, or --doc-id ID, not both")
    actor = replace(Actor.operator(), name=args.by)
    return _appliance(settings).erase(actor, path=args.path, doc_id=args.doc_id).as_json()


def cmd_backup(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from ops.backup import BackupDamaged, BackupRefused, backup

    try:
        return backup(settings, args.dir, _stage_printer(args))
    except BackupRefused as exc:
        raise UsageError(str(exc)) from exc
    except BackupDamaged as exc:
        raise CommandFailed(str(exc)) from exc


def cmd_restore(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from ops.backup import BackupError, BackupRefused, restore

    try:
        return restore(settings, args.dir, args.force, _stage_printer(args))
    except BackupRefused as exc:
        raise UsageError(str(exc)) from exc
    except BackupError as exc:
        raise CommandFailed(str(exc)) from exc


def _stage_printer(args: argparse.Namespace) -> Callable[[str], None]:
    """What a long backup or restore is doing, on a terminal's stderr."""
    if args.json or not sys.stderr.isatty():
        return lambda stage: None
    return lambda stage: print(f"rag {args.command}: {stage}", file=sys.stderr, flush=True)


def cmd_search(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from appliance.replies import search_reply

    appliance = _appliance(settings)
    filters = _filters(args)
    hits = appliance.search(appliance.actor(args.user), args.query, args.k, filters)
    return search_reply(hits)


def cmd_ask(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    appliance = _appliance(settings)
    filters = _filters(args)
    return appliance.ask(appliance.actor(args.user), args.question, filters).answer.as_json()


def cmd_eval(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from appliance.root import build_retriever
    from llm.answer import Answerer
    from llm.build import build_answerer
    from llm.errors import LLMUnavailable
    from ops.evaluate import EvalProgress, GoldenFileError, load_golden, run, score
    from ops.health import llm_status

    hint = "start it with `rag up`, or use --retrieval-only"
    try:
        questions = load_golden(args.golden)
    except GoldenFileError as exc:
        raise UsageError(str(exc)) from exc
    if args.split is not None:
        questions = [q for q in questions if q.item.split_name == args.split]
        if not questions:
            raise UsageError(f"{args.golden}: no questions in the {args.split} split")
    scope = _scope(args, settings)
    if not args.retrieval_only and not (status := llm_status(settings))["reachable"]:
        raise CommandFailed(f"LLM server at {status['url']} is unreachable; {hint}")
    retriever = build_retriever(settings)
    answerer: Answerer | None = None
    if not args.retrieval_only:
        answerer = build_answerer(settings, retriever)
    progress = EvalProgress(sys.stderr) if not args.json and sys.stderr.isatty() else None
    started = time.monotonic()
    try:
        outcomes = run(questions, retriever, answerer, scope, progress)
    except LLMUnavailable as exc:
        raise CommandFailed(f"{exc}; {hint}") from exc
    return score(outcomes, time.monotonic() - started)


def _add_eval_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("eval", parents=[common], help="measure search and answers (golden file)")
    p.add_argument("golden", metavar="GOLDEN.jsonl", help="questions and where their answers are")
    p.add_argument("--retrieval-only", action="store_true",
                   help="measure the search only; the LLM is not called")  # fmt: skip
    p.add_argument("--split", choices=("dev", "test"), default=None,
                   help="only the questions of this split (a line without one is dev)")  # fmt: skip
    p.add_argument("--user", default=None, help="act as this user")
    p.set_defaults(func=cmd_eval)


def cmd_status(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from ingest.ledger import Ledger
    from ops.health import embedder_models, llm_status
    from retrieval.build import build_store

    ledger = Ledger(settings.ledger_path)
    totals = ledger.totals()
    ledger.close()
    store = build_store(settings)
    store_info = {**store.describe(), "chunks": store.count()}
    store.close()
    return {
        **totals, "store": store_info, "embedder": embedder_models(settings),
        "llm": llm_status(settings),
    }  # fmt: skip


def cmd_up(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from ops.stack import up

    return up(settings, with_ui=not args.no_ui)


def cmd_down(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from ops.stack import down

    return down(settings)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    import uvicorn

    from ops.api.app import create_app

    host, port = args.host or settings.api.host, args.port or settings.api.port
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: give a port from 1 to 65535")
    app = create_app(_appliance(settings))
    print(f"serving the API on http://{host}:{port}/", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return {}


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from ops.health import run_checks

    checks = run_checks(settings)
    return {"ok": all(check["ok"] for check in checks), "checks": checks}


def cmd_audit(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    log = _appliance(settings).parts.audit
    if args.verify:
        return log.verify().as_json()
    if args.seal:
        return log.seal("operator")
    if args.limit < 0:
        raise UsageError("--limit must be 0 (every event) or more")
    events = log.events(args.limit or None)
    return {"events": [event.as_json() for event in events]}


def cmd_metrics(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from ops import metrics

    if args.every is not None and (args.textfile is None or args.every <= 0):
        raise UsageError("--every SECONDS (above 0) goes with --textfile PATH")
    if args.serve is not None:
        _serve_metrics(settings, args.host, args.serve)
        return {}
    if args.textfile is not None:
        while True:
            try:
                metrics.write_textfile(settings, args.textfile)
            except OSError as exc:
                raise CommandFailed(f"cannot write {args.textfile} ({exc.strerror or exc}); "
                                    "give a file in a folder you may write") from exc  # fmt: skip
            if args.every is None:
                return {"textfile": str(args.textfile)} if args.json else {}
            time.sleep(args.every)
    families = metrics.collect(settings)
    if args.json:
        return {"metrics": metrics.as_flat_json(families)}
    print(metrics.format_families(families), end="")
    return {}


def _serve_metrics(settings: Settings, host: str, port: int) -> None:
    from ops.metrics import make_server

    if not 0 < port < 65536:
        raise UsageError(f"--serve {port}: give a port from 1 to 65535")
    try:
        server = make_server(settings, host, port)
    except OSError as exc:
        raise CommandFailed(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                            "choose another port with --serve") from exc  # fmt: skip
    print(f"serving metrics on http://{host}:{port}/metrics", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def cmd_users_add(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    groups = (args.groups or "").split(",")
    user = _appliance(settings).add_user(Actor.operator(), args.name, password, groups, args.admin)
    return user.as_json()


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    return {"users": [user.as_json() for user in _appliance(settings).parts.users.list()]}


def cmd_users_remove(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    _appliance(settings).remove_user(Actor.operator(), args.name)
    return {"removed": args.name}


def cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    if args.expires_days is not None and args.expires_days < 1:
        raise UsageError("--expires-days must be at least 1 (leave it out: no expiry)")
    token, secret = _appliance(settings).create_token(
        Actor.operator(), args.user, args.expires_days, args.name
    )
    return {
        "user": token.user,
        "token": secret,
        "id": token.id,
        "expires": token.as_json()["expires"],
    }


def cmd_tokens_list(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    return {"tokens": [token.as_json() for token in _appliance(settings).tokens(args.user)]}


def cmd_tokens_revoke(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    return _appliance(settings).revoke_token(Actor.operator(), args.id).as_json()


def cmd_feedback_export(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from appliance.feedback import FeedbackStore

    if args.json and args.out is None:
        raise UsageError("--json prints only a summary: give --out FILE for the questions")
    store = FeedbackStore(settings.feedback_path)
    try:
        if args.out is None:
            return {"exported": store.export_golden(sys.stdout), "path": None}
        try:
            with open(args.out, "w", encoding="utf-8") as out:
                exported = store.export_golden(out)
        except OSError as exc:
            raise UsageError(
                f"cannot write {args.out} ({exc.strerror or exc}); give a file in a folder "
                "that exists"
            ) from exc
        return {"exported": exported, "path": str(args.out)}
    finally:
        store.close()


def _scope(args: argparse.Namespace, settings: Settings) -> Scope:
    return _appliance(settings).actor(args.user).scope


_built: Appliance | None = None


def _appliance(settings: Settings) -> Appliance:
    """The application layer, built once for this command from its settings."""
    global _built
    if _built is None or _built.settings is not settings:
        from appliance.core import Appliance
        from appliance.root import Parts

        _built = Appliance(Parts(settings))
    return _built


# -- human-readable output -------------------------------------------------------------------


_FAILURES_SHOWN = 20


def _filters(args: argparse.Namespace) -> SearchFilters:
    try:
        return SearchFilters.parse(args.filter)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _print_audit(result: dict[str, Any]) -> None:
    """Every string from the log goes through `printable`: a user name can't forge a line."""
    if "ok" in result:
        if not result["ok"]:
            verdict = f"chain BROKEN: {result['problem']}"
        elif result["signed"]:
            verdict = "chain intact, sealed and signed"
        else:
            verdict = "chain intact, sealed" if result["sealed"] else "chain intact"
        note = f" ({result['note']})" if result["note"] else ""
        print(printable(f"{result['events']} events, {verdict}{note}"))
        return
    if "sealed" in result:
        signed = " and signed it" if result["signed"] else ""
        previous = f"; its head was: {result['previous']}" if result["previous"] else ""
        print(printable(f"sealed the audit log at event {result['seq']}{signed}{previous}"))
        return
    for event in result["events"]:
        detail = printable(json.dumps(event["detail"], ensure_ascii=False))
        user, action = printable(event["user"]), printable(event["action"])
        print(f"{printable(event['ts'])}  {user:<16} {action:<12} {detail}")


def _print_human(command: str, result: dict[str, Any]) -> None:
    if command == "ingest" and result:
        failed = result["failed"]
        print(
            f"{result['files_seen']} files: {result['indexed']} new, {result['updated']} updated, "
            f"{result['unchanged']} unchanged, {result['deleted']} deleted, "
            f"{result['skipped']} skipped, {len(failed)} failed; "
            f"{result['pages']} pages, {result['chunks']} chunks in {result['seconds']:.1f}s"
        )
        for failure in failed[:_FAILURES_SHOWN]:
            print(f"  failed: {failure['path']}: {failure['error']}")
        if len(failed) > _FAILURES_SHOWN:
            print(f"  ... and {len(failed) - _FAILURES_SHOWN} more")
        if result["warnings"]:
            print(f"  {len(result['warnings'])} warnings (parts of files that were not read)")
        if failed or result["warnings"]:
            print(f"  every failure and warning, with its reason: {result['report_file']}")
        if result["still_failed"]:
            print(f"  {result['still_failed']} unchanged files failed in an earlier run (see "
                  "`rag status`); `rag ingest --retry-failed PATH` tries them again")  # fmt: skip
    elif command == "erase":
        copies = f" and {len(result['copies'])} identical copies" if result["copies"] else ""
        print(
            f"erased {result['path']}{copies}: {result['chunks_removed']} chunks removed, "
            f"{result['remaining']} remaining; delete or move the file at the source"
        )
    elif command == "search":
        for rank, hit in enumerate(result["hits"], start=1):
            page = f" p.{hit['page']}" if hit["page"] else ""
            snippet = " ".join(hit["text"].split())[:160]
            print(f"{rank}. {hit['score']:.3f} {hit['path']}{page}\n   {snippet}")
        if not result["hits"]:
            print("no results")
    elif command == "ask":
        print(result["answer"])
        for number, citation in enumerate(result["citations"], start=1):
            page = f", page {citation['page']}" if citation["page"] else ""
            print(f"  [{number}] {citation['path']}{page}")
    elif command == "eval":
        from ops.evaluate import format_report

        print(format_report(result, _FAILURES_SHOWN))
    elif command == "feedback export":
        if result["path"] is None:
            print(f"{result['exported']} questions exported", file=sys.stderr)
        else:
            print(f"{result['exported']} questions written to {result['path']}")
    elif command == "audit":
        _print_audit(result)
    elif command == "doctor":
        for check in result["checks"]:
            mark = "ok  " if check["ok"] else "FAIL"
            print(f"{mark} {check['name']}: {check['detail']}")
    elif command == "up":
        print(f"LLM server: {result['llm_url']}")
        print(f"API: {result['api_url']}")
        if result.get("ui_url"):
            print(f"UI: {result['ui_url']}")
    elif result:
        print(json.dumps(result, indent=2))


# -- entry point -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser = _Parser(prog="rag", description="Operate the on-premises document Q&A appliance.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("ingest", parents=[common], help="index files and folders (a share)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "--workers", type=int, default=None, help="parser processes (default: one per core)"
    )
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                   help="re-scan on this interval until interrupted")  # fmt: skip
    p.add_argument("--rebuild", action="store_true",
                   help="drop the whole index and read every file again (after an upgrade "
                   "that asks for it); give every root the index holds")  # fmt: skip
    p.add_argument("--retry-failed", action="store_true",
                   help="parse again the files that failed before, changed or not")  # fmt: skip
    p.add_argument("--progress-file", type=Path, default=None, metavar="FILE",
                   help="keep the run's progress in FILE as JSON, for a watcher")  # fmt: skip
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("erase", parents=[common],
                       help="erase a document from the index, page pictures, conversations "
                       "and ratings; it is not indexed again while unchanged")  # fmt: skip
    p.add_argument("path", nargs="?", default=None, metavar="PATH",
                   help="the file's path, as the Library or `rag search` shows it")  # fmt: skip
    p.add_argument("--doc-id", default=None, metavar="ID", help="the document id instead")
    p.add_argument("--by", default="operator", metavar="NAME",
                   help="who asked for the erasure, for the audit log")  # fmt: skip
    p.set_defaults(func=cmd_erase)

    p = sub.add_parser("search", parents=[common], help="find passages")
    p.add_argument("query")
    p.add_argument("--k", type=int, default=None, help="number of hits")
    p.add_argument("--user", default=None, help="act as this user")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="folder=/abs/path, type=pdf, language=fr, modified_after=2025-01-01, "
                   "modified_before=...; repeatable, all must hold")  # fmt: skip
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ask", parents=[common], help="answer a question from the documents")
    p.add_argument("question")
    p.add_argument("--user", default=None, help="act as this user")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="folder=/abs/path, type=pdf, language=fr, modified_after=2025-01-01, "
                   "modified_before=...; repeatable, all must hold")  # fmt: skip
    p.set_defaults(func=cmd_ask)
    _add_eval_parser(sub, common)

    for name, func, text in (
        ("status", cmd_status, "what is indexed, store and LLM state"),
        ("down", cmd_down, "stop the local stack"),
        ("doctor", cmd_doctor, "check the installation"),
    ):
        sub.add_parser(name, parents=[common], help=text).set_defaults(func=func)

    p = sub.add_parser("up", parents=[common], help="start the local LLM server, API and UI")
    p.add_argument("--no-ui", action="store_true", help="start the LLM server and the API only")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("serve", parents=[common],
                       help="the HTTP API: OpenAI-compatible chat, search, MCP")  # fmt: skip
    p.add_argument("--host", default=None, help="address to bind (default: RAG_API__HOST)")
    p.add_argument("--port", type=int, default=None, help="port (default: RAG_API__PORT)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("metrics", parents=[common],
                       help="operator metrics in the Prometheus text format")  # fmt: skip
    out = p.add_mutually_exclusive_group()
    out.add_argument("--serve", type=int, default=None, metavar="PORT",
                     help="serve GET /metrics on this port until interrupted")  # fmt: skip
    out.add_argument("--textfile", type=Path, default=None, metavar="PATH",
                     help="write them to PATH atomically, for node_exporter")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address --serve binds")
    p.add_argument("--every", type=float, default=None, metavar="SECONDS",
                   help="with --textfile: write it again on this interval")  # fmt: skip
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("audit", parents=[common], help="who signed in, searched, asked, and when")
    p.add_argument("--limit", type=int, default=100, help="newest events shown (0: all)")
    check = p.add_mutually_exclusive_group()
    check.add_argument("--verify", action="store_true",
                       help="check the chain against its head; exit 1 when it fails")  # fmt: skip
    check.add_argument("--seal", action="store_true",
                       help="accept the log as it is: seal (with a key: sign) it")  # fmt: skip
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("backup", parents=[common],
                       help="copy the index, ledger, users, conversations, ratings and audit "
                       "log into a new folder")  # fmt: skip
    p.add_argument("dir", type=Path, metavar="DIR", help="a new or empty folder")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", parents=[common],
                       help="replace the data folder's state with a backup")  # fmt: skip
    p.add_argument("dir", type=Path, metavar="DIR", help="the folder `rag backup` wrote")
    p.add_argument("--force", action="store_true",
                   help="replace a data folder that holds an index or a ledger")  # fmt: skip
    p.set_defaults(func=cmd_restore)

    users = sub.add_parser("users", help="manage the appliance's users")
    users_sub = users.add_subparsers(dest="users_command", required=True, parser_class=_Parser)
    p = users_sub.add_parser(
        "add", parents=[common], help="add or update a user (password on stdin)"
    )
    p.add_argument("name")
    p.add_argument("--groups", default="", help="comma-separated groups")
    p.add_argument("--admin", action="store_true")
    p.set_defaults(func=cmd_users_add)
    p = users_sub.add_parser("list", parents=[common], help="list users")
    p.set_defaults(func=cmd_users_list)
    p = users_sub.add_parser("remove", parents=[common], help="remove a user")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_users_remove)

    tokens = sub.add_parser("tokens", help="the users' API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True, parser_class=_Parser)
    p = tokens_sub.add_parser("create", parents=[common],
                              help="a new API token for USER, shown once")  # fmt: skip
    p.add_argument("user", metavar="USER")
    p.add_argument("--expires-days", type=int, default=None, metavar="N",
                   help="the token stops working after N days (default: never)")  # fmt: skip
    p.add_argument("--name", default="", metavar="LABEL", help="what the token is for")
    p.set_defaults(func=cmd_tokens_create)
    p = tokens_sub.add_parser("list", parents=[common], help="the tokens, without secrets")
    p.add_argument("--user", default=None, metavar="U", help="only this user's")
    p.set_defaults(func=cmd_tokens_list)
    p = tokens_sub.add_parser("revoke", parents=[common], help="stop a token working")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=cmd_tokens_revoke)

    feedback = sub.add_parser("feedback", help="the users' ratings of answers")
    feedback_sub = feedback.add_subparsers(
        dest="feedback_command", required=True, parser_class=_Parser
    )
    p = feedback_sub.add_parser(
        "export", parents=[common], help="write the ratings as golden questions for `rag eval`"
    )
    p.add_argument("--out", default=None, metavar="FILE", help="write here (default: stdout)")
    p.set_defaults(func=cmd_feedback_export)
    return parser


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
    args = _parser().parse_args(argv)
    _configure_logging()
    func: Callable[[argparse.Namespace, Settings], dict[str, Any]] = args.func
    verb = getattr(args, f"{args.command}_command", None)
    command = f"{args.command} {verb}" if verb else args.command
    try:
        settings = Settings()
        protect_state(settings.data_dir)  # before anything is created; children inherit it
        with _stdout_to_stderr(args.json):
            result = func(args, settings)
    except KeyboardInterrupt:
        return _error_exit(args, 130, "interrupted")
    except Exception as exc:  # every failure becomes one line, never a traceback
        code, message = _classify(exc)
        logging.getLogger("rag").debug("command failed", exc_info=True)
        return _error_exit(args, code, message)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        _print_human(command, result)
    if command == "doctor" and not result["ok"]:
        return EXIT_FAILED
    if command == "audit" and result.get("ok") is False:
        return EXIT_FAILED
    if command == "erase" and result["remaining"]:
        return EXIT_FAILED  # some chunks could not be deleted: run it again
    return EXIT_OK


def _classify(exc: Exception) -> tuple[int, str]:
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


if __name__ == "__main__":
    sys.exit(main())
