"""The `rag` command, by area; `main` is its entry point."""

from ops.cli.main import main, parser

__all__ = ["main", "parser"]
