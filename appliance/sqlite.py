"""The SQLite habits the appliance's own stores share (conversations, feedback, sign-in
attempts, API tokens)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path


def open_shared(path: Path, schema: str) -> sqlite3.Connection:
    """One connection a store keeps and shares between threads (the UI's sessions), each use
    under the store's lock; the schema is created when missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA secure_delete = ON")  # erased text is overwritten, not left in free pages
    db.executescript(schema)
    return db


@contextmanager
def write_transaction(
    db: sqlite3.Connection, lock: threading.Lock | None = None
) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once: no other writer reads in between, and no reader
    sees half of it."""
    with lock or nullcontext():
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
