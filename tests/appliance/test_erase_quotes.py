"""An answer quoted from an erased document is the document's own sentence: erasing the
document blanks it, in the conversations and in the ratings alike."""

from __future__ import annotations

from pathlib import Path

from appliance.conversations import ERASED_QUOTE, ConversationStore
from appliance.feedback import FeedbackStore
from llm.answer import Answer, Citation
from retrieval.models import Hit, document_id
from tests.appliance.test_conversations import CANTEEN, TRAVEL, hit

MEALS = hit(TRAVEL, 3, "The meal allowance is 45 EUR per day.", page=2)
LUNCH = hit(CANTEEN, 0, "The canteen serves lunch from 11:30.")


def quoted(sentence: str, source: Hit, shown: list[Hit]) -> Answer:
    citation = Citation(source.chunk.path, source.chunk.page, source.chunk.id)
    return Answer(f"\u201c{sentence}\u201d [1]", False, [citation], shown, "quote")


QUOTE_FROM_TRAVEL = quoted("The meal allowance is 45 EUR per day.", MEALS, [MEALS, LUNCH])
QUOTE_FROM_CANTEEN = quoted("The canteen serves lunch from 11:30.", LUNCH, [LUNCH, MEALS])
MODEL_ANSWER = Answer(
    "It is 45 EUR [1].", False, [Citation(TRAVEL, 2, MEALS.chunk.id)], [MEALS], "model"
)


def test_erasing_a_document_blanks_the_answers_quoted_from_it_in_the_history(
    tmp_path: Path,
) -> None:
    path = tmp_path / "history.sqlite3"
    store = ConversationStore(path)
    conversation = store.create("alice", "Food")
    for question, answer in (("Meals?", QUOTE_FROM_TRAVEL), ("Lunch?", QUOTE_FROM_CANTEEN),
                             ("Allowance?", MODEL_ANSWER)):  # fmt: skip
        store.add_turn("alice", conversation.id, question, answer)

    assert store.erase_document(document_id(TRAVEL)) == 3

    turns = store.turns("alice", conversation.id)
    assert [t.text for t in turns] == [ERASED_QUOTE, QUOTE_FROM_CANTEEN.text, MODEL_ANSWER.text]
    assert [t.question for t in turns] == ["Meals?", "Lunch?", "Allowance?"]
    assert turns[1].citations == QUOTE_FROM_CANTEEN.citations  # quoted from another document
    store.close()
    assert b"45 EUR per day" not in path.read_bytes()


def test_erasing_a_document_blanks_the_answers_quoted_from_it_in_the_ratings(
    tmp_path: Path,
) -> None:
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    store.record("bob", "Meals?", QUOTE_FROM_TRAVEL, "up")
    store.record("bob", "Lunch?", QUOTE_FROM_CANTEEN, "down", "wrong hours")

    assert store.erase_document(document_id(TRAVEL)) == 2

    texts = {f.question: f.text for f in store.list()}
    assert texts == {"Meals?": ERASED_QUOTE, "Lunch?": QUOTE_FROM_CANTEEN.text}
    assert all(p.doc_id != document_id(TRAVEL) for f in store.list() for p in f.passages)
    assert store.erase_document(document_id(TRAVEL)) == 0
