"""`rag backup` and `rag restore`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ops.cli.base import CommandFailed, Result, UsageError, add_command, stage_printer
from settings import Settings


def backup(args: argparse.Namespace, settings: Settings) -> Result:
    from ops.backup import BackupDamaged, BackupRefused, backup

    try:
        return backup(settings, args.dir, stage_printer(args))
    except BackupRefused as exc:
        raise UsageError(str(exc)) from exc
    except BackupDamaged as exc:
        raise CommandFailed(str(exc)) from exc


def restore(args: argparse.Namespace, settings: Settings) -> Result:
    from ops.backup import BackupError, BackupRefused, restore

    try:
        return restore(settings, args.dir, args.force, stage_printer(args))
    except BackupRefused as exc:
        raise UsageError(str(exc)) from exc
    except BackupError as exc:
        raise CommandFailed(str(exc)) from exc


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = add_command(commands, "backup", common,
                    "copy the index, ledger, users, tokens, conversations, ratings and audit "
                    "log into a new folder", backup)  # fmt: skip
    p.add_argument("dir", type=Path, metavar="DIR", help="a new or empty folder")
    p = add_command(commands, "restore", common,
                    "replace the data folder's state with a backup", restore)  # fmt: skip
    p.add_argument("dir", type=Path, metavar="DIR", help="the folder `rag backup` wrote")
    p.add_argument("--force", action="store_true",
                   help="replace a data folder that holds an index or a ledger")  # fmt: skip
