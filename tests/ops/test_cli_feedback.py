"""`rag feedback export`: the users' ratings as golden questions, on stdout or in a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appliance.feedback import FeedbackStore
from llm.answer import Answer
from ops.evaluate import load_golden
from settings import Settings
from tests.appliance.test_conversations import TRAVEL, meal_answer
from tests.ops.test_cli import assert_one_line_error, rag, rag_json


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path / "data")
    store = FeedbackStore(Settings(data_dir=tmp_path / "data").feedback_path)
    store.record("alice", "Meal allowance?", meal_answer(), "up")
    refusal = Answer("I cannot find that in the documents.", True, [], [], "refused")
    store.record("bob", "Dog sitting?", refusal, "up")
    store.close()
    return env


def test_export_prints_golden_lines_on_stdout(env: dict[str, str]) -> None:
    result = rag(env, "feedback", "export")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"id": "fb-1", "question": "Meal allowance?", "source": {"path": TRAVEL, "page": 2}},
        {"id": "fb-2", "question": "Dog sitting?", "unanswerable": True},
    ]
    assert "2 questions exported" in result.stderr


def test_export_to_a_file_that_rag_eval_reads(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "feedback.jsonl"
    assert rag_json(env, "feedback", "export", "--out", str(out)) == {
        "exported": 2,
        "path": str(out),
    }
    assert [g.id for g in load_golden(out)] == ["fb-1", "fb-2"]
    human = rag(env, "feedback", "export", "--out", str(out))
    assert human.returncode == 0 and human.stdout == f"2 questions written to {out}\n"


def test_export_into_a_missing_folder_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    result = rag(env, "feedback", "export", "--out", str(tmp_path / "nowhere" / "f.jsonl"))
    assert result.returncode == 2
    assert_one_line_error(result)
    assert "give a file in a folder that exists" in result.stderr


def test_json_without_out_is_a_usage_error(env: dict[str, str]) -> None:
    result = rag(env, "feedback", "export", "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout) == {
        "error": "--json prints only a summary: give --out FILE for the questions"
    }
    assert_one_line_error(result)


def test_an_empty_feedback_store_exports_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path / "fresh")
    out = tmp_path / "empty.jsonl"
    assert rag_json(env, "feedback", "export", "--out", str(out))["exported"] == 0
    assert out.read_text() == ""
