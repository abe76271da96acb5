"""A long-running process's sign of life in a file, and the check of its age.

`rag ingest --watch` beats (sets the file's modification time to now) as each file of a pass
is done and every few seconds while it waits for the next pass. The ingest service's
healthcheck runs

    python -m ops.heartbeat FILE --max-age SECONDS

which exits 0 when FILE was beaten within SECONDS, and 1, saying how long ago or that there
is no beat at all, otherwise: a dead watcher and one stuck on a file both stop beating.

Standard library only, and nothing of the appliance: a healthcheck starts a fresh interpreter
each time and must take milliseconds, not load the stack.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

EXIT_ALIVE = 0
EXIT_STALE = 1


class Heartbeat:
    """Beats `path`, at most once every `every_seconds` (a pass may finish many files a second)."""

    def __init__(self, path: Path, every_seconds: float = 1.0) -> None:
        self.path = path
        self._every_seconds = every_seconds
        self._last = -float("inf")

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last < self._every_seconds:
            return
        self._last = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()  # an existing file gets the current time

    def wait(self, seconds: float, beat_every: float = 10.0) -> None:
        """Sleeps `seconds`, beating at least every `beat_every` seconds meanwhile."""
        deadline = time.monotonic() + seconds
        self.beat()
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, beat_every))
            self.beat()


def age_seconds(path: Path, now: float | None = None) -> float | None:
    """Seconds since `path` was last beaten; None when it never was."""
    try:
        beaten = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return max(0.0, (time.time() if now is None else now) - beaten)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.heartbeat",
        description="Exit 0 when FILE was beaten within --max-age seconds, 1 otherwise.",
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--max-age", type=float, required=True, metavar="SECONDS")
    args = parser.parse_args(argv)
    age = age_seconds(args.file)
    if age is None:
        print(f"no heartbeat: {args.file} does not exist", file=sys.stderr)
        return EXIT_STALE
    if age > args.max_age:
        print(f"stale heartbeat: {args.file} last beaten {age:.0f} s ago", file=sys.stderr)
        return EXIT_STALE
    return EXIT_ALIVE


if __name__ == "__main__":
    sys.exit(main())
