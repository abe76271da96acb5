"""Users' ratings of answers, kept with what was answered and shown, and exported as questions
for `rag eval` (see ops/evaluate.py for the golden-file format)."""

from __future__ import annotations

import builtins
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal, TextIO, get_args

from appliance.conversations import (
    Passage,
    Turn,
    dump_answer,
    erase_document_rows,
    load_citations,
    load_passages,
)
from appliance.sqlite import open_shared, write_transaction
from llm.answer import Answer, Citation

Rating = Literal["up", "down"]
SUMMARY_LENGTH = 200  # characters of the answer quoted in an exported note

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user            TEXT NOT NULL,
    conversation_id TEXT,
    question        TEXT NOT NULL,
    answer          TEXT NOT NULL,
    refused         INTEGER NOT NULL,
    origin          TEXT NOT NULL,
    citations       TEXT NOT NULL,
    passages        TEXT NOT NULL,
    doc_ids         TEXT NOT NULL,
    rating          TEXT NOT NULL,
    comment         TEXT NOT NULL,
    created         REAL NOT NULL
);
"""

_COLUMNS = (
    "id, user, conversation_id, question, answer, refused, origin, citations, passages, "
    "rating, comment, created"
)


@dataclass(frozen=True)
class Feedback:
    id: int
    user: str
    conversation_id: str | None
    question: str
    text: str
    refused: bool
    origin: str
    citations: list[Citation]
    passages: list[Passage]
    rating: Rating
    comment: str
    created: float

    def golden(self) -> dict[str, object]:
        """This rating as a golden-file line; a thumbs down (or a thumbs up on an answer
        that cites nothing) has only a note, for the admin to complete."""
        line: dict[str, object] = {"id": f"fb-{self.id}", "question": self.question}
        if self.rating == "up" and self.refused:
            return {**line, "unanswerable": True}
        if self.rating == "up" and self.citations:
            first = self.citations[0]
            source: dict[str, object] = {"path": first.path}
            if first.page is not None:
                source["page"] = first.page
            return {**line, "source": source}
        return {**line, "note": self._note()}

    def _note(self) -> str:
        verdict = "thumbs up, but the answer cites no source" if self.rating == "up" else (
            "thumbs down"
        )  # fmt: skip
        comment = " ".join(self.comment.split())
        said = f"{verdict}: {comment!r}" if comment else verdict
        if self.refused:
            return f"{said}; the appliance refused to answer"
        answer = " ".join(self.text.split())
        if len(answer) > SUMMARY_LENGTH:
            answer = answer[:SUMMARY_LENGTH] + "\u2026"
        cited = ", ".join(_label(c) for c in self.citations) or "nothing"
        return f"{said}; answered {answer!r}, citing {cited}"


class FeedbackStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._db = open_shared(path, _SCHEMA)
        self._lock = threading.Lock()
        self._clock = clock

    def record(
        self,
        user: str,
        question: str,
        answer: Answer | Turn,
        rating: Rating,
        comment: str = "",
        conversation_id: str | None = None,
    ) -> int:
        """Store one rating of an answer, fresh or shown again from the history; returns its
        id."""
        if rating not in get_args(Rating):
            raise ValueError(f"unknown rating {rating!r}: use 'up' or 'down'")
        citations, passages, doc_ids = dump_answer(answer)
        with write_transaction(self._db, self._lock) as db:
            cursor = db.execute(
                "INSERT INTO feedback (user, conversation_id, question, answer, refused, origin, "
                "citations, passages, doc_ids, rating, comment, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    user, conversation_id, question, answer.text, int(answer.refused),
                    answer.origin, citations, passages, doc_ids, rating, comment, self._clock(),
                ),
            )  # fmt: skip
        return int(cursor.lastrowid or 0)

    def list(self, limit: int | None = None) -> builtins.list[Feedback]:
        """Every user's ratings, newest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM feedback ORDER BY created DESC, id DESC LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [_feedback(row) for row in rows]

    def erase_document(self, doc_id: str) -> int:
        """Remove a document's passages and citations from every rating (an answer quoted
        from the document becomes `appliance.conversations.ERASED_QUOTE`); returns how many
        changed."""
        with write_transaction(self._db, self._lock) as db:
            return erase_document_rows(db, "feedback", doc_id)

    def export_golden(self, out: TextIO) -> int:
        """Write every rating as a golden-file line, oldest first; returns the lines written."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM feedback ORDER BY id").fetchall()
        for row in rows:
            out.write(json.dumps(_feedback(row).golden(), ensure_ascii=False) + "\n")
        return len(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _feedback(row: Any) -> Feedback:
    (row_id, user, conversation_id, question, text, refused, origin, citations, passages,
     rating, comment, created) = row  # fmt: skip
    return Feedback(
        row_id, user, conversation_id, question, text, bool(refused), origin,
        load_citations(citations), load_passages(passages), rating, comment, created,
    )  # fmt: skip


def _label(citation: Citation) -> str:
    name = PurePath(citation.path).name
    return name if citation.page is None else f"{name} p.{citation.page}"
