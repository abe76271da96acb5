"""Conversations: each user's own, kept with the passages shown, until a document is erased."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.conversations import (
    WITHHELD_QUOTE,
    ConversationStore,
    Passage,
    Turn,
    dump_answer,
    readable_turns,
)
from appliance.errors import BadRequest, UnknownConversation
from llm.answer import Answer, Citation
from retrieval.access import EVERYONE, Scope, denied
from retrieval.edge_store import EdgeStore
from retrieval.models import Chunk, Hit, chunk_id, document_id
from retrieval.sparse import SparseEncoder

TRAVEL = "/share/finance/travel.pdf"
CANTEEN = "/share/facilities/canteen.md"


def hit(path: str, ordinal: int, text: str, page: int | None = None, score: float = 0.5) -> Hit:
    doc = document_id(path)
    chunk = Chunk(
        id=chunk_id(doc, ordinal), doc_id=doc, ordinal=ordinal, text=text, path=path, page=page,
        title="Travel policy", section="Meals", content_sha256="0" * 64,
        acl=frozenset({EVERYONE}), mtime=0.0,
    )  # fmt: skip
    return Hit(chunk=chunk, score=score)


def answer(text: str, cited: list[Hit], shown: list[Hit]) -> Answer:
    citations = [Citation(h.chunk.path, h.chunk.page, h.chunk.id) for h in cited]
    return Answer(text, False, citations, shown)


def meal_answer() -> Answer:
    meals = hit(TRAVEL, 3, "The meal allowance is 45 EUR per day.", page=2, score=0.91)
    lunch = hit(CANTEEN, 0, "The canteen serves lunch from 11:30.", score=0.42)
    return answer("The allowance is 45 EUR per day [1].", [meals], [meals, lunch])


@pytest.fixture
def store(tmp_path: Path) -> ConversationStore:
    ticks = itertools.count(1000.0)
    return ConversationStore(tmp_path / "history.sqlite3", clock=lambda: next(ticks))


def test_conversations_are_listed_newest_activity_first(store: ConversationStore) -> None:
    first = store.create("alice", "Travel")
    second = store.create("alice", "Canteen")
    assert [c.id for c in store.list("alice")] == [second.id, first.id]
    store.add_turn("alice", first.id, "Meal allowance?", meal_answer())
    assert [c.id for c in store.list("alice")] == [first.id, second.id]
    assert store.get("alice", first.id).updated > first.created
    assert len(first.id) == 32 and int(first.id, 16) >= 0


def test_another_user_cannot_see_or_change_a_conversation(store: ConversationStore) -> None:
    mine = store.create("alice", "Salary bands")
    store.add_turn("alice", mine.id, "What is my band?", meal_answer())
    assert store.list("bob") == []
    with pytest.raises(UnknownConversation):
        store.get("bob", mine.id)
    with pytest.raises(UnknownConversation):
        store.turns("bob", mine.id)
    with pytest.raises(UnknownConversation):
        store.rename("bob", mine.id, "mine now")
    with pytest.raises(UnknownConversation):
        store.delete("bob", mine.id)
    with pytest.raises(UnknownConversation):
        store.add_turn("bob", mine.id, "And mine?", meal_answer())
    assert store.get("alice", mine.id).title == "Salary bands"
    assert [t.question for t in store.turns("alice", mine.id)] == ["What is my band?"]


def test_an_unknown_conversation_is_a_bad_request_with_a_clear_message(
    store: ConversationStore,
) -> None:
    with pytest.raises(BadRequest) as raised:
        store.get("alice", "feedface")
    assert (
        str(raised.value) == "no conversation 'feedface' for user 'alice'; pick one from the list"
    )


def test_rename_and_delete(store: ConversationStore) -> None:
    kept = store.create("alice", "Old name")
    gone = store.create("alice", "To delete")
    store.add_turn("alice", gone.id, "Meal allowance?", meal_answer())
    assert store.rename("alice", kept.id, "  New   name ").title == "New name"
    assert store.get("alice", kept.id).title == "New name"
    with pytest.raises(ValueError, match="blank"):
        store.rename("alice", kept.id, "   ")
    store.delete("alice", gone.id)
    assert [c.id for c in store.list("alice")] == [kept.id]
    with pytest.raises(UnknownConversation):
        store.turns("alice", gone.id)
    assert store.erase_document(document_id(TRAVEL)) == 0  # its turns went with it


def test_the_first_question_names_an_untitled_conversation(store: ConversationStore) -> None:
    short = store.create("alice", "")
    store.add_turn("alice", short.id, "  What is the\nmeal allowance? ", meal_answer())
    store.add_turn("alice", short.id, "And for hotels?", meal_answer())
    assert store.get("alice", short.id).title == "What is the meal allowance?"
    long = store.create("alice")
    question = "How many days of annual leave can a part-time employee carry over to next year?"
    store.add_turn("alice", long.id, question, meal_answer())
    title = store.get("alice", long.id).title
    assert len(title) <= 61 and title.endswith("\u2026")
    assert question.startswith(title.removesuffix("\u2026"))
    named = store.create("alice", "Leave")
    store.add_turn("alice", named.id, question, meal_answer())
    assert store.get("alice", named.id).title == "Leave"


def test_turns_come_back_as_they_were_shown(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    store = ConversationStore(path)
    conversation = store.create("alice", "Travel")
    shown = meal_answer()
    refusal = Answer("I cannot find that in the documents.", True, [], [], "refused")
    added = store.add_turn("alice", conversation.id, "Meal allowance?", shown)
    store.add_turn("alice", conversation.id, "Dog sitting?", refusal)
    store.close()

    turns = ConversationStore(path).turns("alice", conversation.id)  # as after signing in again
    assert [t.question for t in turns] == ["Meal allowance?", "Dog sitting?"]
    first, second = turns
    assert first == added
    assert (first.text, first.refused, first.origin) == (shown.text, False, "model")
    assert first.citations == shown.citations
    meals = shown.passages[0]
    assert first.passages[0] == Passage(
        meals.chunk.id, meals.chunk.doc_id, TRAVEL, 2, "Travel policy", "Meals",
        "The meal allowance is 45 EUR per day.", 0.91,
    )  # fmt: skip
    assert [p.path for p in first.passages] == [TRAVEL, CANTEEN]
    assert (second.refused, second.origin, second.citations, second.passages) == (
        True, "refused", [], [],
    )  # fmt: skip


def test_erasing_a_document_removes_its_passages_from_every_users_turns(
    store: ConversationStore,
) -> None:
    alices = store.create("alice", "Travel")
    bobs = store.create("bob", "Travel too")
    store.add_turn("alice", alices.id, "Meal allowance?", meal_answer())
    store.add_turn("bob", bobs.id, "Meal allowance?", meal_answer())
    lunch = hit(CANTEEN, 0, "The canteen serves lunch from 11:30.")
    store.add_turn("bob", bobs.id, "Lunch?", answer("From 11:30 [1].", [lunch], [lunch]))

    assert store.erase_document(document_id(TRAVEL)) == 2
    for user, conversation in (("alice", alices), ("bob", bobs)):
        turn = store.turns(user, conversation.id)[0]
        assert turn.question == "Meal allowance?"
        assert turn.text == "The allowance is 45 EUR per day [1]."
        assert turn.citations == []
        assert [p.path for p in turn.passages] == [CANTEEN]
        assert "45 EUR" not in repr(turn.passages)
    untouched = store.turns("bob", bobs.id)[1]
    assert [p.text for p in untouched.passages] == ["The canteen serves lunch from 11:30."]
    assert store.erase_document(document_id(TRAVEL)) == 0


def test_erased_passage_text_is_overwritten_in_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    store = ConversationStore(path)
    conversation = store.create("alice", "Travel")
    long_passage = hit(TRAVEL, 5, "Per diem rates by country: Zanzibar 71 EUR. " * 200)
    lunch = hit(CANTEEN, 0, "The canteen serves lunch from 11:30.")
    store.add_turn("alice", conversation.id, "Rates?", answer("71 EUR [1].", [long_passage],
                                                               [long_passage, lunch]))  # fmt: skip
    assert b"Zanzibar 71 EUR" in path.read_bytes()
    store.erase_document(document_id(TRAVEL))
    store.close()
    assert b"Zanzibar 71 EUR" not in path.read_bytes()
    assert b"The canteen serves lunch from 11:30." in path.read_bytes()


# -- shown again, as the reader may read it now -----------------------------------------------

ALICE = Scope.of({"user:alice", "group:staff", EVERYONE})


@pytest.fixture
def index(tmp_path: Path) -> Iterator[EdgeStore]:
    """A real index holding the chunks of `meal_answer`, readable by everyone."""
    store = EdgeStore(tmp_path / "index", SparseEncoder(["en"]), linger_seconds=0)
    store.ensure_collection(2)
    chunks = [h.chunk for h in meal_answer().passages]
    store.upsert(chunks, [[1.0, 0.0], [0.0, 1.0]])
    yield store
    store.close()


def alices_turn(store: ConversationStore, shown: Answer | None = None) -> Turn:
    conversation = store.create("alice", "Travel")
    store.add_turn("alice", conversation.id, "Meal allowance?", shown or meal_answer())
    return store.turns("alice", conversation.id)[0]


def test_readable_turns_withhold_passages_whose_acl_no_longer_admits_the_reader(
    store: ConversationStore, index: EdgeStore
) -> None:
    turn = alices_turn(store)
    assert readable_turns([turn], index, ALICE) == [turn]  # readable: shown as it was

    # The travel policy is now readable by HR alone (ingestion saw its permissions change).
    index.set_acl(document_id(TRAVEL), frozenset({"group:hr"}))
    (shown,) = readable_turns([turn], index, ALICE)
    meals, lunch = shown.passages
    assert meals.withheld and meals.chunk_id == turn.passages[0].chunk_id  # its place kept
    assert (meals.text, meals.path, meals.doc_id, meals.title, meals.section, meals.page) == (
        "", "", "", "", "", None,
    )  # fmt: skip
    assert "45 EUR per day." not in repr(shown.passages) and TRAVEL not in repr(shown)
    assert [c.chunk_id for c in shown.citations] == [meals.chunk_id]
    assert lunch == turn.passages[1] and not lunch.withheld
    assert shown.text == turn.text  # the answer the user was given stays theirs

    # Rated again, the withheld passage is not copied into the feedback either.
    citations, passages, doc_ids = dump_answer(shown)
    assert json.loads(citations) == []
    assert [p["path"] for p in json.loads(passages)] == [CANTEEN]
    assert json.loads(doc_ids) == [document_id(CANTEEN)]

    # A colleague in HR still sees it; the stored turn itself is unchanged.
    hr = Scope.of({"user:hanna", "group:hr"})
    assert readable_turns([turn], index, hr)[0].passages[0] == turn.passages[0]
    assert store.turns("alice", turn.conversation_id) == [turn]


def test_readable_turns_withhold_a_passage_whose_acl_now_denies_the_reader(
    store: ConversationStore, index: EdgeStore
) -> None:
    turn = alices_turn(store)
    index.set_acl(document_id(TRAVEL), frozenset({EVERYONE, denied("user:alice")}))
    (shown,) = readable_turns([turn], index, ALICE)
    assert [p.withheld for p in shown.passages] == [True, False]
    assert "45 EUR" not in repr(shown.passages)
    bob = Scope.of({"user:bob", EVERYONE})
    assert readable_turns([turn], index, bob) == [turn]

    index.set_acl(document_id(TRAVEL), frozenset({EVERYONE, denied(EVERYONE)}))
    assert readable_turns([turn], index, bob)[0].passages[0].withheld
    assert readable_turns([turn], index, Scope.operator()) == [turn]


def test_a_reader_no_entry_allows_sees_no_passage_even_when_none_denies_them(
    store: ConversationStore, index: EdgeStore
) -> None:
    turn = alices_turn(store)
    index.set_acl(document_id(TRAVEL), frozenset({"group:hr", denied("group:interns")}))
    (shown,) = readable_turns([turn], index, ALICE)
    assert [p.withheld for p in shown.passages] == [True, False]


def test_history_withholds_a_passage_whose_chunk_left_the_index(
    store: ConversationStore, index: EdgeStore
) -> None:
    turn = alices_turn(store)
    index.delete_document(document_id(CANTEEN))
    (shown,) = readable_turns([turn], index, ALICE)
    assert [p.withheld for p in shown.passages] == [False, True]
    assert "11:30" not in repr(shown)


def test_a_quoted_answer_is_withheld_with_the_passage_it_quotes(
    store: ConversationStore, index: EdgeStore
) -> None:
    meals = meal_answer().passages[0]
    quoted = Answer(
        "\u201cThe meal allowance is 45 EUR per day.\u201d [1]", False,
        [Citation(TRAVEL, 2, meals.chunk.id)], [meals], "quote",
    )  # fmt: skip
    turn = alices_turn(store, quoted)
    index.set_acl(document_id(TRAVEL), frozenset({"group:hr"}))
    (shown,) = readable_turns([turn], index, ALICE)
    assert shown.text == WITHHELD_QUOTE
    assert "45 EUR" not in repr(shown)


def test_a_scope_of_nobody_sees_no_stored_passage(
    store: ConversationStore, index: EdgeStore
) -> None:
    turn = alices_turn(store)
    (shown,) = readable_turns([turn], index, Scope.of(set()))
    assert all(p.withheld for p in shown.passages)
    assert readable_turns([turn], index, Scope.operator()) == [turn]


def test_the_index_is_asked_once_per_document_not_once_per_passage(
    store: ConversationStore, index: EdgeStore
) -> None:
    asked: list[str] = []
    document_chunks = index.document_chunks

    def counted(doc_id: str) -> list[tuple[Chunk, list[float]]]:
        asked.append(doc_id)
        return document_chunks(doc_id)

    turns = [alices_turn(store), alices_turn(store)]  # two turns, four passages, two documents
    index.document_chunks = counted  # type: ignore[method-assign]
    readable_turns(turns, index, ALICE)
    assert sorted(asked) == sorted({document_id(TRAVEL), document_id(CANTEEN)})
