"""`rag up`, `down`, `serve`, `status`, `doctor` and `metrics`: running the appliance and
seeing how it is."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ops.cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    CommandFailed,
    Result,
    UsageError,
    add_command,
    appliance,
)
from settings import Settings


def status(args: argparse.Namespace, settings: Settings) -> Result:
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


def up(args: argparse.Namespace, settings: Settings) -> Result:
    from ops.stack import up

    return up(settings, with_ui=not args.no_ui)


def print_up(result: Result) -> None:
    print(f"LLM server: {result['llm_url']}")
    print(f"API: {result['api_url']}")
    if result.get("ui_url"):
        print(f"UI: {result['ui_url']}")


def down(args: argparse.Namespace, settings: Settings) -> Result:
    from ops.stack import down

    return down(settings)


def serve(args: argparse.Namespace, settings: Settings) -> Result:
    import uvicorn

    from ops.api.app import create_app

    host, port = args.host or settings.api.host, args.port or settings.api.port
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: give a port from 1 to 65535")
    app = create_app(appliance(settings))
    print(f"serving the API on http://{host}:{port}/", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return {}


def doctor(args: argparse.Namespace, settings: Settings) -> Result:
    from ops.health import run_checks

    checks = run_checks(settings)
    return {"ok": all(check["ok"] for check in checks), "checks": checks}


def print_doctor(result: Result) -> None:
    for check in result["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        print(f"{mark} {check['name']}: {check['detail']}")


def doctor_status(result: Result) -> int:
    return EXIT_OK if result["ok"] else EXIT_FAILED


def metrics(args: argparse.Namespace, settings: Settings) -> Result:
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
    return {"text": metrics.format_families(families)}


def print_metrics(result: Result) -> None:
    if "text" in result:
        print(result["text"], end="")


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


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    add_command(commands, "status", common, "what is indexed, store and LLM state", status)
    p = add_command(commands, "up", common, "start the local LLM server, API and UI", up, print_up)
    p.add_argument("--no-ui", action="store_true", help="start the LLM server and the API only")
    add_command(commands, "down", common, "stop the local stack", down)
    p = add_command(commands, "serve", common,
                    "the HTTP API: OpenAI-compatible chat, search, MCP", serve)  # fmt: skip
    p.add_argument("--host", default=None, help="address to bind (default: RAG_API__HOST)")
    p.add_argument("--port", type=int, default=None, help="port (default: RAG_API__PORT)")
    add_command(commands, "doctor", common, "check the installation", doctor, print_doctor,
                doctor_status)  # fmt: skip

    p = add_command(commands, "metrics", common,
                    "operator metrics in the Prometheus text format", metrics,
                    print_metrics)  # fmt: skip
    out = p.add_mutually_exclusive_group()
    out.add_argument("--serve", type=int, default=None, metavar="PORT",
                     help="serve GET /metrics on this port until interrupted")  # fmt: skip
    out.add_argument("--textfile", type=Path, default=None, metavar="PATH",
                     help="write them to PATH atomically, for node_exporter")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address --serve binds")
    p.add_argument("--every", type=float, default=None, metavar="SECONDS",
                   help="with --textfile: write it again on this interval")  # fmt: skip
