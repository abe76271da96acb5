"""`rag audit` and `rag feedback export`: what the appliance recorded."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from appliance.audit import printable
from ops.cli.base import (
    EXIT_FAILED,
    EXIT_OK,
    Result,
    UsageError,
    add_command,
    add_group,
    appliance,
)
from settings import Settings


def audit(args: argparse.Namespace, settings: Settings) -> Result:
    log = appliance(settings).parts.audit
    if args.verify:
        return log.verify().as_json()
    if args.seal:
        return log.seal("operator")
    if args.limit < 0:
        raise UsageError("--limit must be 0 (every event) or more")
    events = log.events(args.limit or None)
    return {"events": [event.as_json() for event in events]}


def print_audit(result: Result) -> None:
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


def audit_status(result: Result) -> int:
    return EXIT_FAILED if result.get("ok") is False else EXIT_OK


def export_feedback(args: argparse.Namespace, settings: Settings) -> Result:
    if args.json and args.out is None:
        raise UsageError("--json prints only a summary: give --out FILE for the questions")
    ratings = appliance(settings).parts.feedback
    if args.out is None:
        return {"exported": ratings.export_golden(sys.stdout), "path": None}
    try:
        with open(args.out, "w", encoding="utf-8") as out:
            exported = ratings.export_golden(out)
    except OSError as exc:
        raise UsageError(
            f"cannot write {args.out} ({exc.strerror or exc}); give a file in a folder that exists"
        ) from exc
    return {"exported": exported, "path": str(args.out)}


def print_export(result: Result) -> None:
    if result["path"] is None:
        print(f"{result['exported']} questions exported", file=sys.stderr)
    else:
        print(f"{result['exported']} questions written to {result['path']}")


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = add_command(commands, "audit", common, "who signed in, searched, asked, and when",
                    audit, print_audit, audit_status)  # fmt: skip
    p.add_argument("--limit", type=int, default=100, help="newest events shown (0: all)")
    check = p.add_mutually_exclusive_group()
    check.add_argument("--verify", action="store_true",
                       help="check the chain against its head; exit 1 when it fails")  # fmt: skip
    check.add_argument("--seal", action="store_true",
                       help="accept the log as it is: seal (with a key: sign) it")  # fmt: skip

    feedback = add_group(commands, "feedback", "the users' ratings of answers")
    p = add_command(feedback, "export", common,
                    "write the ratings as golden questions for `rag eval`",
                    export_feedback, print_export)  # fmt: skip
    p.add_argument("--out", default=None, metavar="FILE", help="write here (default: stdout)")
