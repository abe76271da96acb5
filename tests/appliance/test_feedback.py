"""Ratings of answers: kept with what was shown, erasable, exported as golden questions."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pytest

from appliance.feedback import FeedbackStore
from llm.answer import Answer
from ops.evaluate import GoldenFileError, load_golden
from retrieval.models import document_id
from tests.appliance.test_conversations import CANTEEN, TRAVEL, answer, hit, meal_answer

REFUSAL = Answer("I cannot find that in the documents.", True, [], [], "refused")
MISSING_SOURCE = (
    'give `source` or `sources` (fill in where the answer is), or set `"unanswerable": true`'
)


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    ticks = itertools.count(1000.0)
    return FeedbackStore(tmp_path / "feedback.sqlite3", clock=lambda: next(ticks))


def lunch_answer() -> Answer:
    lunch = hit(CANTEEN, 0, "The canteen serves lunch from 11:30.")
    return answer("From 11:30 [1].", [lunch], [lunch])


def export(store: FeedbackStore) -> list[dict[str, object]]:
    out = io.StringIO()
    written = store.export_golden(out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert written == len(lines)
    return lines


def test_ratings_are_kept_with_what_was_shown_newest_first(store: FeedbackStore) -> None:
    first = store.record("alice", "Meal allowance?", meal_answer(), "up", conversation_id="c1")
    second = store.record("bob", "Dog sitting?", REFUSAL, "down", "We do have a pet policy")
    assert [f.id for f in store.list()] == [second, first]
    assert [f.id for f in store.list(limit=1)] == [second]
    up = store.list()[1]
    assert (up.user, up.question, up.rating, up.comment, up.conversation_id) == (
        "alice", "Meal allowance?", "up", "", "c1",
    )  # fmt: skip
    assert (up.text, up.refused, up.origin) == ("The allowance is 45 EUR per day [1].", False,
                                                 "model")  # fmt: skip
    assert up.citations == meal_answer().citations
    assert [(p.path, p.page, p.text) for p in up.passages] == [
        (TRAVEL, 2, "The meal allowance is 45 EUR per day."),
        (CANTEEN, None, "The canteen serves lunch from 11:30."),
    ]
    down = store.list()[0]
    assert (down.refused, down.comment, down.conversation_id) == (True, "We do have a pet policy",
                                                                  None)  # fmt: skip


def test_an_unknown_rating_is_rejected(store: FeedbackStore) -> None:
    with pytest.raises(ValueError, match="use 'up' or 'down'"):
        store.record("alice", "Q?", meal_answer(), "meh")  # type: ignore[arg-type]
    assert store.list() == []


def test_erasing_a_document_removes_its_passages_and_citations(store: FeedbackStore) -> None:
    meals = store.record("alice", "Meal allowance?", meal_answer(), "up")
    lunch = store.record("bob", "Lunch?", lunch_answer(), "up")
    assert store.erase_document(document_id(TRAVEL)) == 1
    by_id = {f.id: f for f in store.list()}
    assert by_id[meals].citations == []
    assert [p.path for p in by_id[meals].passages] == [CANTEEN]
    assert by_id[meals].question == "Meal allowance?"
    assert [c.path for c in by_id[lunch].citations] == [CANTEEN]
    assert [p.text for p in by_id[lunch].passages] == ["The canteen serves lunch from 11:30."]


def test_thumbs_up_exports_a_golden_line_that_rag_eval_loads(
    store: FeedbackStore, tmp_path: Path
) -> None:
    answered = store.record("alice", "Meal allowance?", meal_answer(), "up")
    lunch = store.record("alice", "Lunch?", lunch_answer(), "up", "quick and right")
    refused = store.record("bob", "Dog sitting?", REFUSAL, "up")
    lines = export(store)
    assert lines == [
        {"id": f"fb-{answered}", "question": "Meal allowance?",
         "source": {"path": TRAVEL, "page": 2}},
        {"id": f"fb-{lunch}", "question": "Lunch?", "source": {"path": CANTEEN}},
        {"id": f"fb-{refused}", "question": "Dog sitting?", "unanswerable": True},
    ]  # fmt: skip
    golden = tmp_path / "feedback.jsonl"
    with golden.open("w", encoding="utf-8") as out:
        assert store.export_golden(out) == 3
    loaded = load_golden(golden)
    assert [g.id for g in loaded] == [f"fb-{answered}", f"fb-{lunch}", f"fb-{refused}"]
    assert loaded[0].item.all_sources[0].matches(TRAVEL, 2)
    assert not loaded[0].item.all_sources[0].matches(TRAVEL, 3)
    assert loaded[2].item.unanswerable


def test_thumbs_down_exports_a_note_for_the_admin_to_complete(
    store: FeedbackStore, tmp_path: Path
) -> None:
    down = store.record("alice", "Meal allowance?", meal_answer(), "down", "It is 50 EUR now")
    refused = store.record("bob", "Dog sitting?", REFUSAL, "down")
    first, second = export(store)
    assert set(first) == {"id", "question", "note"} and first["id"] == f"fb-{down}"
    note = str(first["note"])
    assert "It is 50 EUR now" in note and "45 EUR per day" in note and "travel.pdf p.2" in note
    assert set(second) == {"id", "question", "note"} and "refused" in str(second["note"])

    golden = tmp_path / "feedback.jsonl"
    golden.write_text(json.dumps(first) + "\n", encoding="utf-8")
    with pytest.raises(GoldenFileError) as raised:
        load_golden(golden)
    assert str(raised.value) == f"{golden} line 1: {MISSING_SOURCE}"
    assert "\n" not in str(raised.value)

    completed = {**first, "source": {"path": "finance/travel.pdf", "page": 2}}
    golden.write_text(json.dumps(completed) + "\n" + json.dumps({**second, "unanswerable": True})
                      + "\n", encoding="utf-8")  # fmt: skip
    loaded = load_golden(golden)
    assert [g.id for g in loaded] == [f"fb-{down}", f"fb-{refused}"]
    assert loaded[0].item.note == first["note"]


def test_thumbs_up_on_an_answer_citing_nothing_needs_completing(store: FeedbackStore) -> None:
    store.record("alice", "Q?", Answer("Something.", False, [], []), "up")
    (line,) = export(store)
    assert "source" not in line and "unanswerable" not in line
    assert "cites no source" in str(line["note"])


def test_an_empty_store_exports_nothing(store: FeedbackStore) -> None:
    assert export(store) == []
