"""Each user's conversations with the appliance, kept so they can be shown again as they were.

A turn keeps the question, the answer, its citations and the passages shown with it (their
text too), as JSON columns. Every method takes the user and touches only that user's rows.

A stored turn is shown again only as its reader may read it now (`readable_turns`): a passage
whose chunk has left the index, or whose chunk's ACL the reader's scope may no longer read
(`Scope.may_read`: it allows none of the reader's principals, or denies one), is withheld.
It keeps its place (the answer cites passages by number) and nothing else: no text, path,
title or page; and an answer quoted from it becomes WITHHELD_QUOTE.
"""

from __future__ import annotations

import builtins
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.errors import UnknownConversation
from appliance.sqlite import open_shared, write_transaction
from llm.answer import Answer, Citation
from retrieval.access import Scope
from retrieval.models import Hit, document_id
from retrieval.store import VectorStore

TITLE_LENGTH = 60
# What a quoted answer becomes when the document it quotes is erased.
ERASED_QUOTE = "[removed: the source document was erased]"
# What a quoted answer becomes, shown again, when its reader may no longer read its source.
WITHHELD_QUOTE = "[withheld: the source is no longer available to you]"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id      TEXT PRIMARY KEY,
    user    TEXT NOT NULL,
    title   TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_user ON conversations (user, updated);
CREATE TABLE IF NOT EXISTS turns (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    user            TEXT NOT NULL,
    question        TEXT NOT NULL,
    answer          TEXT NOT NULL,
    refused         INTEGER NOT NULL,
    origin          TEXT NOT NULL,
    citations       TEXT NOT NULL,
    passages        TEXT NOT NULL,
    doc_ids         TEXT NOT NULL,
    created         REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (conversation_id, id);
"""


@dataclass(frozen=True)
class Passage:
    """A passage as it was shown with an answer."""

    chunk_id: str
    doc_id: str
    path: str
    page: int | None
    title: str
    section: str
    text: str
    score: float
    # Never stored: set on a passage shown again to a reader who may no longer read it.
    withheld: bool = False

    @classmethod
    def from_hit(cls, hit: Hit) -> Passage:
        chunk = hit.chunk
        return cls(
            chunk.id, chunk.doc_id, chunk.path, chunk.page,
            chunk.title, chunk.section, chunk.text, hit.score,
        )  # fmt: skip

    def as_json(self) -> dict[str, object]:
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "path": self.path,
            "page": self.page,
            "title": self.title,
            "section": self.section,
            "text": self.text,
            "score": self.score,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Passage:
        return cls(
            str(data["chunk_id"]), str(data["doc_id"]), str(data["path"]), data.get("page"),
            str(data.get("title", "")), str(data.get("section", "")), str(data["text"]),
            float(data.get("score", 0.0)),
        )  # fmt: skip

    def withheld_copy(self) -> Passage:
        """The passage as shown to a reader who may no longer read it: its place only."""
        return Passage(self.chunk_id, "", "", None, "", "", "", 0.0, withheld=True)


@dataclass(frozen=True)
class Turn:
    """One question and the answer shown for it."""

    id: int
    conversation_id: str
    question: str
    text: str
    refused: bool
    origin: str
    citations: list[Citation]
    passages: list[Passage]
    created: float


@dataclass(frozen=True)
class Conversation:
    id: str
    user: str
    title: str
    created: float
    updated: float


def default_title(question: str) -> str:
    """The question on one line, cut at a word to about TITLE_LENGTH characters."""
    title = " ".join(question.split())
    if len(title) <= TITLE_LENGTH:
        return title
    cut = title[:TITLE_LENGTH].rsplit(" ", 1)[0] or title[:TITLE_LENGTH]
    return cut.rstrip(" ,;:.") + "\u2026"


# -- the JSON shape shared with the feedback store ------------------------------------------


def dump_answer(answer: Answer | Turn) -> tuple[str, str, str]:
    """The citations, passages and cited or shown documents of an answer (fresh, or a turn
    shown again), as JSON columns."""
    citations = answer.citations
    if isinstance(answer, Turn):
        passages = [p for p in answer.passages if not p.withheld]
        withheld = {p.chunk_id for p in answer.passages if p.withheld}
        citations = [c for c in citations if c.chunk_id not in withheld]
    else:
        passages = [Passage.from_hit(hit) for hit in answer.passages]
    return (
        json.dumps([c.as_json() for c in citations], ensure_ascii=False),
        json.dumps([p.as_json() for p in passages], ensure_ascii=False),
        json.dumps(_doc_ids(citations, passages)),
    )


def load_citations(column: str) -> list[Citation]:
    return [Citation(c["path"], c.get("page"), c["chunk_id"]) for c in json.loads(column)]


def load_passages(column: str) -> list[Passage]:
    return [Passage.from_json(p) for p in json.loads(column)]


def without_document(
    doc_id: str, citations: list[Citation], passages: list[Passage]
) -> tuple[list[Citation], list[Passage]] | None:
    """The citations and passages left once a document is erased; None when it had none."""
    erased = {p.chunk_id for p in passages if p.doc_id == doc_id}
    kept_passages = [p for p in passages if p.doc_id != doc_id]
    kept_citations = [
        c for c in citations if c.chunk_id not in erased and document_id(c.path) != doc_id
    ]
    if len(kept_passages) == len(passages) and len(kept_citations) == len(citations):
        return None
    return kept_citations, kept_passages


def erase_document_rows(db: sqlite3.Connection, table: str, doc_id: str) -> int:
    """Drop a document's passages and citations from every row of `table` that has them; an
    answer quoted from the document (its text is the document's sentence) becomes
    ERASED_QUOTE."""
    rows = db.execute(
        f"SELECT id, answer, origin, citations, passages FROM {table} WHERE instr(doc_ids, ?) > 0",
        (json.dumps(doc_id),),
    ).fetchall()
    changed = 0
    for row_id, text, origin, citations_column, passages_column in rows:
        citations = load_citations(citations_column)
        kept = without_document(doc_id, citations, load_passages(passages_column))
        if kept is None:
            continue
        kept_citations, kept_passages = kept
        if origin == "quote" and len(kept_citations) < len(citations):
            text = ERASED_QUOTE
        db.execute(
            f"UPDATE {table} SET answer = ?, citations = ?, passages = ?, doc_ids = ? WHERE id = ?",
            (
                text,
                json.dumps([c.as_json() for c in kept_citations], ensure_ascii=False),
                json.dumps([p.as_json() for p in kept_passages], ensure_ascii=False),
                json.dumps(_doc_ids(kept_citations, kept_passages)),
                row_id,
            ),
        )
        changed += 1
    return changed


def readable_turns(turns: Sequence[Turn], index: VectorStore, scope: Scope) -> list[Turn]:
    """The turns as the reader of `scope` may see them now (see the module's docstring)."""
    shown = [(p.doc_id, p.chunk_id) for turn in turns for p in turn.passages]
    cited = [(document_id(c.path), c.chunk_id) for turn in turns for c in turn.citations]
    readable = readable_chunk_ids(index, scope, shown + cited)
    return [_as_readable(turn, readable) for turn in turns]


def readable_chunk_ids(
    index: VectorStore, scope: Scope, chunks: Iterable[tuple[str, str]]
) -> set[str]:
    """Of the (doc_id, chunk_id) pairs, the chunks that are in the index now and whose ACL
    the scope may read. The index is asked once per document, whatever its number of chunks."""
    pairs = set(chunks)
    wanted = {chunk_id for _, chunk_id in pairs}
    if not wanted or scope.sees_nothing:
        return set()
    readable = set()
    for doc_id in sorted({doc_id for doc_id, _ in pairs}):
        for chunk, _ in index.document_chunks(doc_id):
            if chunk.id in wanted and scope.may_read(chunk.acl):
                readable.add(chunk.id)
    return readable


def _as_readable(turn: Turn, readable: Collection[str]) -> Turn:
    chunk_ids = [p.chunk_id for p in turn.passages] + [c.chunk_id for c in turn.citations]
    withheld = {chunk_id for chunk_id in chunk_ids if chunk_id not in readable}
    if not withheld:
        return turn
    text = turn.text
    if turn.origin == "quote" and any(c.chunk_id in withheld for c in turn.citations):
        text = WITHHELD_QUOTE
    return replace(
        turn,
        text=text,
        passages=[p.withheld_copy() if p.chunk_id in withheld else p for p in turn.passages],
        citations=[
            Citation("", None, c.chunk_id) if c.chunk_id in withheld else c for c in turn.citations
        ],
    )


def _doc_ids(citations: Sequence[Citation], passages: Sequence[Passage]) -> list[str]:
    ids = [p.doc_id for p in passages] + [document_id(c.path) for c in citations]
    return sorted(set(ids))


# -- the store -------------------------------------------------------------------------------


class ConversationStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._db = open_shared(path, _SCHEMA)
        self._lock = threading.Lock()
        self._clock = clock

    def create(self, user: str, title: str = "") -> Conversation:
        """A new conversation; an empty title becomes the first question's."""
        now = self._clock()
        conversation = Conversation(secrets.token_hex(16), user, _clean(title), now, now)
        with write_transaction(self._db, self._lock) as db:
            db.execute(
                "INSERT INTO conversations (id, user, title, created, updated) "
                "VALUES (?, ?, ?, ?, ?)",
                (conversation.id, user, conversation.title, now, now),
            )
        return conversation

    def list(self, user: str) -> builtins.list[Conversation]:
        """The user's conversations, the one with the latest activity first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, user, title, created, updated FROM conversations WHERE user = ? "
                "ORDER BY updated DESC, rowid DESC",
                (user,),
            ).fetchall()
        return [Conversation(*row) for row in rows]

    def get(self, user: str, conversation_id: str) -> Conversation:
        with self._lock:
            row = self._db.execute(
                "SELECT id, user, title, created, updated FROM conversations "
                "WHERE id = ? AND user = ?",
                (conversation_id, user),
            ).fetchone()
        if row is None:
            raise _unknown(user, conversation_id)
        return Conversation(*row)

    def rename(self, user: str, conversation_id: str, title: str) -> Conversation:
        title = _clean(title)
        if not title:
            raise ValueError("a conversation title cannot be blank: give a few words")
        with write_transaction(self._db, self._lock) as db:
            updated = db.execute(
                "UPDATE conversations SET title = ? WHERE id = ? AND user = ?",
                (title, conversation_id, user),
            ).rowcount
        if not updated:
            raise _unknown(user, conversation_id)
        return self.get(user, conversation_id)

    def delete(self, user: str, conversation_id: str) -> None:
        """Remove the conversation and its turns."""
        with write_transaction(self._db, self._lock) as db:
            deleted = db.execute(
                "DELETE FROM conversations WHERE id = ? AND user = ?", (conversation_id, user)
            ).rowcount
            if deleted:
                db.execute(
                    "DELETE FROM turns WHERE conversation_id = ? AND user = ?",
                    (conversation_id, user),
                )
        if not deleted:
            raise _unknown(user, conversation_id)

    def add_turn(self, user: str, conversation_id: str, question: str, answer: Answer) -> Turn:
        citations, passages, doc_ids = dump_answer(answer)
        now = self._clock()
        with write_transaction(self._db, self._lock) as db:
            row = db.execute(
                "SELECT title FROM conversations WHERE id = ? AND user = ?",
                (conversation_id, user),
            ).fetchone()
            if row is None:
                raise _unknown(user, conversation_id)
            title = row[0] or default_title(question)
            db.execute(
                "UPDATE conversations SET title = ?, updated = ? WHERE id = ?",
                (title, now, conversation_id),
            )
            cursor = db.execute(
                "INSERT INTO turns (conversation_id, user, question, answer, refused, origin, "
                "citations, passages, doc_ids, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id, user, question, answer.text, int(answer.refused),
                    answer.origin, citations, passages, doc_ids, now,
                ),
            )  # fmt: skip
        return Turn(
            int(cursor.lastrowid or 0), conversation_id, question, answer.text, answer.refused,
            answer.origin, load_citations(citations), load_passages(passages), now,
        )  # fmt: skip

    def turns(self, user: str, conversation_id: str) -> builtins.list[Turn]:
        """The conversation's turns, oldest first."""
        self.get(user, conversation_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, conversation_id, question, answer, refused, origin, citations, "
                "passages, created FROM turns WHERE conversation_id = ? AND user = ? "
                "ORDER BY id",
                (conversation_id, user),
            ).fetchall()
        return [_turn(row) for row in rows]

    def erase_document(self, doc_id: str) -> int:
        """Remove a document's passages and citations from every user's turns (the questions
        and answers stay, but an answer quoted from the document becomes ERASED_QUOTE);
        returns how many turns changed."""
        with write_transaction(self._db, self._lock) as db:
            return erase_document_rows(db, "turns", doc_id)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _turn(row: Any) -> Turn:
    row_id, conversation_id, question, text, refused, origin, citations, passages, created = row
    return Turn(
        row_id, conversation_id, question, text, bool(refused), origin,
        load_citations(citations), load_passages(passages), created,
    )  # fmt: skip


def _clean(title: str) -> str:
    return default_title(title)


def _unknown(user: str, conversation_id: str) -> UnknownConversation:
    return UnknownConversation(
        f"no conversation {conversation_id!r} for user {user!r}; pick one from the list"
    )
