"""`rag eval`: the figures on constructed hits and answers, golden-file validation, and a run
of the real command on the ingested sample share."""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from appliance.root import Parts
from llm.answer import Answer, Answerer, Citation, PreparedQuestion
from llm.client import Message
from ops.evaluate import (
    Completer,
    EvalProgress,
    Golden,
    GoldenFileError,
    GoldenQuestion,
    Outcome,
    format_report,
    load_golden,
    path_matches,
    run,
    score,
)
from retrieval.access import Scope
from retrieval.models import Chunk, Hit
from settings import Settings
from tests.conftest import free_port, make_settings
from tests.ops.test_cli import assert_one_line_error, rag, rag_json

SHARE = "/srv/share"


def hit(path: str, page: int | None = None, score: float = 0.5) -> Hit:
    chunk = Chunk(id=f"{path}:{page}", doc_id=path, ordinal=0, text="passage", path=path,
                  page=page, content_sha256="0" * 64, acl=frozenset({"everyone"}),
                  mtime=0.0)  # fmt: skip
    return Hit(chunk=chunk, score=score)


def golden(qid: str = "q1", **fields: Any) -> Golden:
    item = GoldenQuestion.model_validate({"question": f"question {qid}?", **fields})
    return Golden(qid, 1, item)


def answered(text: str, *cited: tuple[str, int | None]) -> Answer:
    citations = [Citation(path, page, f"{path}:{page}") for path, page in cited]
    return Answer(text, False, citations)


REFUSED = Answer("I cannot find the answer in the documents.", True, [])


def noise(count: int) -> list[Hit]:
    return [hit(f"{SHARE}/other/doc-{n}.pdf", 1) for n in range(count)]


# -- retrieval figures -------------------------------------------------------------------------


def test_a_source_at_rank_3_counts_for_recall_at_5_and_10_but_not_at_1() -> None:
    question = golden(source={"path": "finance/travel.pdf", "page": 2})
    hits = [*noise(2), hit(f"{SHARE}/finance/travel.pdf", 2), *noise(7)]
    report = score([Outcome(question, hits)])
    assert (report["recall@1"], report["recall@5"], report["recall@10"]) == (0, 1, 1)
    assert report["mrr@10"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["misses"] == [
        {
            "id": "q1",
            "question": "question q1?",
            "kind": "retrieval",
            "detail": "finance/travel.pdf p.2 at rank 3",
            "split": "dev",
            "language": "unknown",
        }  # fmt: skip
    ]


def test_a_source_beyond_the_top_10_is_not_found() -> None:
    question = golden(source={"path": "finance/travel.pdf"})
    hits = [*noise(10), hit(f"{SHARE}/finance/travel.pdf", 2)]
    report = score([Outcome(question, hits)])
    assert (report["recall@10"], report["mrr@10"]) == (0, 0)
    assert report["misses"][0]["detail"] == (
        f"finance/travel.pdf not in the top 10; top hit {SHARE}/other/doc-0.pdf p.1"
    )


def test_figures_are_shares_over_the_answerable_questions() -> None:
    first = golden("a", source={"path": "a.md"})
    fourth = golden("b", source={"path": "b.md"})
    missing = golden("c", source={"path": "c.md"})
    never = golden("d", unanswerable=True)
    outcomes = [
        Outcome(first, [hit(f"{SHARE}/a.md"), *noise(9)]),
        Outcome(fourth, [*noise(3), hit(f"{SHARE}/b.md")]),
        Outcome(missing, noise(10)),
        Outcome(never, noise(10)),
    ]
    report = score(outcomes, seconds=1.234)
    assert (report["questions"], report["answerable"], report["unanswerable"]) == (4, 3, 1)
    assert (report["recall@1"], report["recall@5"], report["recall@10"]) == (0.3333, 0.6667, 0.6667)
    assert report["mrr@10"] == round((1 + 1 / 4) / 3, 4)
    assert report["seconds"] == 1.23
    assert [(m["id"], m["kind"]) for m in report["misses"]] == [
        ("b", "retrieval"),
        ("c", "retrieval"),
    ]


def test_retrieval_only_leaves_the_answer_figures_null() -> None:
    report = score([Outcome(golden(source={"path": "a.md"}, facts=["x"]), [hit(f"{SHARE}/a.md")])])
    for key in ("cited_right", "refused_unanswerable", "refused_answerable", "facts"):
        assert report[key] is None, key
    assert report["misses"] == []


# -- which hits match a source -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        ("finance/travel.pdf", "/srv/share/finance/travel.pdf", True),
        ("travel.pdf", "/srv/share/finance/travel.pdf", True),
        ("./finance/travel.pdf", "/srv/share/finance/travel.pdf", True),
        ("finance/travel.pdf", "/srv/share/xfinance/travel.pdf", False),
        ("finance/travel.pdf", "/srv/share/finance/old-travel.pdf", False),
        ("share/travel.pdf", "/srv/share/finance/travel.pdf", False),
        ("finance/travel.pdf", "/srv/share/finance/travel.pdf.bak", False),
        ("srv/share/finance/travel.pdf", "/share/finance/travel.pdf", False),
        ("/srv/share/finance/travel.pdf", "/srv/share/finance/travel.pdf", True),
        ("/share/finance/travel.pdf", "/srv/share/finance/travel.pdf", False),
        ("/finance/travel.pdf", "/srv/share/finance/travel.pdf", False),
    ],
)
def test_paths_match_as_a_suffix_on_whole_components_or_exactly_when_absolute(
    expected: str, actual: str, matches: bool
) -> None:
    assert path_matches(expected, actual) is matches


def test_a_page_must_match_when_given_and_any_page_counts_when_not() -> None:
    on_page = golden(source={"path": "a.pdf", "page": 2})
    any_page = golden(source={"path": "a.pdf"})
    hits = [hit(f"{SHARE}/a.pdf", 3), hit(f"{SHARE}/a.pdf", None), hit(f"{SHARE}/a.pdf", 2)]
    assert score([Outcome(on_page, hits)])["mrr@10"] == 0.3333
    assert score([Outcome(any_page, hits)])["mrr@10"] == 1


def test_any_one_of_several_sources_counts() -> None:
    question = golden(sources=[{"path": "old/policy.pdf", "page": 1}, {"path": "new/policy.pdf"}])
    hits = [*noise(1), hit(f"{SHARE}/new/policy.pdf", 4), hit(f"{SHARE}/old/policy.pdf", 1)]
    assert score([Outcome(question, hits)])["mrr@10"] == 0.5


# -- answer figures ----------------------------------------------------------------------------


def test_refusals_are_counted_apart_for_answerable_and_unanswerable_questions() -> None:
    source = {"path": "a.pdf", "page": 1}
    hits = [hit(f"{SHARE}/a.pdf", 1)]
    outcomes = [
        Outcome(golden("ok", source=source), hits, answered("EUR 5 [1]", (f"{SHARE}/a.pdf", 1))),
        Outcome(golden("shy", source=source), hits, REFUSED),
        Outcome(golden("none1", unanswerable=True), noise(3), REFUSED),
        Outcome(golden("none2", unanswerable=True), noise(3), answered("Brazil.", ("x.pdf", 1))),
    ]
    report = score(outcomes)
    assert report["cited_right"] == 0.5
    assert report["refused_answerable"] == 0.5
    assert report["refused_unanswerable"] == 0.5
    assert [(m["id"], m["kind"]) for m in report["misses"]] == [
        ("shy", "refusal"), ("none2", "refusal")
    ]  # fmt: skip
    assert report["misses"][1]["detail"] == "answered instead of refusing: 'Brazil.'"


def test_an_answer_citing_another_file_or_page_is_a_citation_miss() -> None:
    question = golden(source={"path": "a.pdf", "page": 1})
    answer = answered("EUR 5 [1] [2]", (f"{SHARE}/a.pdf", 2), (f"{SHARE}/b.pdf", None))
    report = score([Outcome(question, [hit(f"{SHARE}/a.pdf", 1)], answer)])
    assert report["cited_right"] == 0
    assert report["refused_answerable"] == 0
    assert report["misses"] == [
        {
            "id": "q1",
            "question": "question q1?",
            "kind": "citation",
            "detail": f"cited {SHARE}/a.pdf p.2, {SHARE}/b.pdf",
            "split": "dev",
            "language": "unknown",
        }  # fmt: skip
    ]


def test_facts_are_found_whatever_the_case_and_spacing() -> None:
    question = golden(source={"path": "a.pdf"}, facts=["45  EUR", "Second Class"])
    answer = answered("It is 45\u00a0eur,\nin second\tclass [1].", (f"{SHARE}/a.pdf", 1))
    report = score([Outcome(question, [hit(f"{SHARE}/a.pdf", 1)], answer)])
    assert report["facts"] == 1
    assert report["misses"] == []


def test_a_missing_fact_is_named_and_a_refused_answer_misses_its_facts() -> None:
    hits = [hit(f"{SHARE}/a.pdf", 1)]
    partial = answered("It is 45 EUR [1]. " + "x" * 300, (f"{SHARE}/a.pdf", 1))
    outcomes = [
        Outcome(golden("partial", source={"path": "a.pdf"}, facts=["45 EUR", "30 days"]), hits,
                partial),
        Outcome(golden("shy", source={"path": "a.pdf"}, facts=["45 EUR"]), hits, REFUSED),
        Outcome(golden("plain", source={"path": "a.pdf"}), hits, partial),
    ]  # fmt: skip
    report = score(outcomes)
    assert report["facts"] == 0  # two questions have facts, neither answer has them all
    facts_miss = next(m for m in report["misses"] if m["kind"] == "facts")
    assert facts_miss["id"] == "partial"
    assert facts_miss["detail"].startswith("missing '30 days' in 'It is 45 EUR [1]. xxx")
    quoted = facts_miss["detail"].split(" in ", 1)[1]
    assert len(quoted) == 200 + 2  # the answer, cut to 200 characters, in quotes


def test_facts_are_null_when_no_question_has_facts() -> None:
    question = golden(source={"path": "a.pdf"})
    answer = answered("EUR 5 [1]", (f"{SHARE}/a.pdf", 1))
    assert score([Outcome(question, [hit(f"{SHARE}/a.pdf", 1)], answer)])["facts"] is None


def test_a_figure_over_no_questions_is_null() -> None:
    report = score([Outcome(golden(unanswerable=True), [], REFUSED)])
    assert report["recall@1"] is None and report["cited_right"] is None
    assert report["refused_unanswerable"] == 1


def supported_by(support: float, refused: bool = False) -> Answer:
    if refused:
        return Answer("I cannot find the answer in the documents.", True, [], support=support)
    return Answer("It is 12 [1].", False, [Citation("/s/x.pdf", 1, "c")], support=support)


def test_calibration_picks_the_support_that_keeps_false_refusals_within_budget() -> None:
    # 40 answerable questions with support 1.00 .. 1.39; 4 unanswerable at 0.90 .. 1.20.
    outcomes = [
        Outcome(golden(f"a{n}", source={"path": "x.pdf"}), [hit("/s/x.pdf", 1)],
                supported_by(1.00 + n / 100))
        for n in range(40)
    ] + [
        Outcome(golden(f"u{n}", unanswerable=True), [hit("/s/y.pdf", 1)],
                supported_by(0.90 + n / 10, refused=True))
        for n in range(4)
    ]  # fmt: skip
    calibration = score(outcomes)["calibration"]
    # 5 % of 40 is 2 questions: the threshold is the third lowest answerable support.
    assert calibration == {
        "min_support": 1.02, "refused_answerable": 0.05, "refused_unanswerable": 0.5,
    }  # fmt: skip
    retrieval_only = [Outcome(o.golden, o.hits) for o in outcomes]
    assert score(retrieval_only)["calibration"] is None


def test_quoted_answers_are_counted_among_the_answered() -> None:
    quote = Answer("\u201cIt is 12.\u201d [1]", False, [Citation("/s/x.pdf", 1, "c")],
                   origin="quote")  # fmt: skip
    outcomes = [
        Outcome(golden("a1", source={"path": "x.pdf"}), [hit("/s/x.pdf", 1)], quote),
        Outcome(golden("a2", source={"path": "x.pdf"}), [hit("/s/x.pdf", 1)],
                answered("It is 12 [1].", ("/s/x.pdf", 1))),
        Outcome(golden("a3", source={"path": "x.pdf"}), [hit("/s/x.pdf", 1)], REFUSED),
    ]  # fmt: skip
    assert score(outcomes)["quoted"] == 0.5


def test_the_human_report_lists_the_figures_and_at_most_20_misses() -> None:
    outcomes = [Outcome(golden(f"q{n}", source={"path": "a.pdf"}), noise(10)) for n in range(25)]
    text = format_report(score(outcomes), 20)
    assert "recall@5" in text and "  0.000" in text
    assert "cited_right" in text and "     -" in text
    assert "misses (25):" in text and "and 5 more" in text
    assert text.count(" retrieval: ") == 20


def test_figures_are_given_per_split_for_same_language_and_cross_lingual_questions() -> None:
    found, lost = [hit(f"{SHARE}/a.md"), *noise(9)], noise(10)
    outcomes = [
        Outcome(golden("d-en", source={"path": "a.md"}, language="en", split="dev"), found),
        Outcome(golden("d-fr", source={"path": "a.md"}, language="fr",
                       document_language="fr", split="dev"), lost),
        Outcome(golden("t-en", source={"path": "a.md"}, language="en", split="test"), lost),
        Outcome(golden("t-de", source={"path": "a.md"}, language="de",
                       document_language="en", split="test"), found),
        Outcome(golden("t-fr", source={"path": "a.md"}, language="fr",
                       document_language="en", split="test"), lost),
        Outcome(golden("t-none", unanswerable=True, language="de", split="test"), lost),
        Outcome(golden("unsplit", source={"path": "a.md"}), found),
    ]  # fmt: skip
    report = score(outcomes)
    assert (report["questions"], report["recall@5"]) == (7, 0.5)
    dev, test = report["splits"]["dev"], report["splits"]["test"]
    assert list(report["splits"]) == ["dev", "test"]
    assert (dev["questions"], dev["recall@5"], dev["mrr@10"]) == (3, 0.6667, 0.6667)
    assert dev["languages"]["en"]["recall@1"] == 1.0
    assert dev["languages"]["fr"]["recall@1"] == 0.0
    assert dev["languages"]["unknown"]["questions"] == 1
    assert dev["cross_lingual"] is None  # French over French is not cross-lingual
    assert (test["questions"], test["answerable"], test["unanswerable"]) == (4, 3, 1)
    assert test["recall@5"] == 0.3333
    assert test["languages"]["de"]["questions"] == 1  # the unanswerable one: not cross-lingual
    assert test["languages"]["de"]["recall@5"] is None
    assert "fr" not in test["languages"]
    assert test["cross_lingual"]["questions"] == 2
    assert test["cross_lingual"]["recall@5"] == 0.5
    assert "misses" not in test and "misses" not in test["languages"]["de"]
    assert {m["id"]: m["split"] for m in report["misses"]} == {
        "d-fr": "dev", "t-en": "test", "t-fr": "test"
    }  # fmt: skip


def test_a_split_without_questions_is_left_out_and_answer_figures_follow_answers() -> None:
    outcomes = [
        Outcome(golden("a", source={"path": "x.pdf"}, split="test"), [hit("/s/x.pdf", 1)],
                answered("It is 12 [1].", ("/s/x.pdf", 1))),
        Outcome(golden("b", unanswerable=True, split="test"), noise(3), REFUSED),
    ]  # fmt: skip
    splits = score(outcomes)["splits"]
    assert list(splits) == ["test"]
    assert (splits["test"]["cited_right"], splits["test"]["refused_unanswerable"]) == (1.0, 1.0)
    assert splits["test"]["languages"]["unknown"]["cited_right"] == 1.0


def test_the_human_report_has_a_row_per_split_and_language() -> None:
    outcomes = [
        Outcome(golden("a", source={"path": "a.md"}, language="en", split="dev"), noise(10)),
        Outcome(golden("b", source={"path": "a.md"}, language="fr", document_language="en",
                       split="test"), [hit(f"{SHARE}/a.md")]),
    ]  # fmt: skip
    text = format_report(score(outcomes))
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in text.splitlines()}
    assert rows[("dev", "all")][:3] == ["1", "0", "0.000"]
    assert rows[("dev", "en")][:3] == ["1", "0", "0.000"]
    assert rows[("test", "cross")][:3] == ["1", "0", "1.000"]
    assert ("test", "en") not in rows and ("test", "fr") not in rows
    assert "a [dev] retrieval: " in text


def test_the_progress_line_counts_questions() -> None:
    stream = io.StringIO()
    progress = EvalProgress(stream)
    progress.start(2)
    progress.advance()
    progress.advance()
    progress.finish()
    frames = stream.getvalue().split("\r")[1:]
    assert frames[0].startswith("[" + "." * 24 + "] 0/2 questions")
    assert frames[-1].startswith("[" + "#" * 24 + "] 2/2 questions")


# -- golden files ------------------------------------------------------------------------------


def write_golden(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_a_golden_file_is_read_with_line_numbers_as_default_ids(tmp_path: Path) -> None:
    path = write_golden(
        tmp_path,
        '{"id": "en-001", "question": "Rate?", "source": {"path": "a.pdf", "page": 2}, '
        '"facts": ["45 EUR"], "language": "en"}',
        "",
        '{"question": "Who?", "unanswerable": true}',
        '{"id": 7, "question": "Where?", "sources": [{"path": "a.pdf"}, {"path": "/b/c.md"}]}',
    )
    questions = load_golden(path)
    assert [q.id for q in questions] == ["en-001", "3", "7"]
    assert questions[0].item.all_sources[0].page == 2
    assert questions[1].item.unanswerable and not questions[1].item.all_sources
    assert [s.path for s in questions[2].item.all_sources] == ["a.pdf", "/b/c.md"]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"question": "Q?", "sourc": {"path": "a.pdf"}}', "unknown key 'sourc'"),
        ('{"question": "Q?", "source": {"path": "a.pdf", "pages": 2}}',
         "unknown key 'source.pages'"),
        ('{"source": {"path": "a.pdf"}}', "missing key 'question'"),
        ('{"question": "Q?"}', "give `source` or `sources`"),
        ('{"question": "Q?", "source": {"path": "a.pdf"}, "sources": [{"path": "b.pdf"}]}',
         "not both"),
        ('{"question": "Q?", "sources": []}', "`sources` is empty"),
        ('{"question": "Q?", "unanswerable": true, "source": {"path": "a.pdf"}}',
         "an unanswerable question has no"),
        ('{"question": "Q?", "source": {"path": "a.pdf", "page": 0}}', "source.page"),
        ('{"question": "Q?", "source": {"path": ""}}', "source.path"),
        ('{"question": "  ", "unanswerable": true}', "the question is blank"),
        ('{"question": "Q?", "source": {"path": "a.pdf"}, "facts": "45 EUR"}', "facts"),
        ('{"question": "Q?", "source": {"path": "a.pdf"},', "not valid JSON"),
        ('{"question": "Q?", "unanswerable": true, "split": "train"}', "split"),
        ('["Q?", "a.pdf"]', "expected a JSON object"),
    ],
)  # fmt: skip
def test_a_bad_line_is_reported_with_its_number(tmp_path: Path, line: str, problem: str) -> None:
    path = write_golden(tmp_path, '{"question": "Fine?", "unanswerable": true}', line)
    with pytest.raises(GoldenFileError) as caught:
        load_golden(path)
    assert caught.value.line == 2
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path} line 2: ")
    assert "\n" not in str(caught.value)


def test_a_repeated_id_an_empty_file_and_a_missing_file_are_errors(tmp_path: Path) -> None:
    twice = '{"id": "x", "question": "Q?", "unanswerable": true}'
    with pytest.raises(GoldenFileError, match=r"line 2: id 'x' already used on line 1"):
        load_golden(write_golden(tmp_path, twice, twice))
    with pytest.raises(GoldenFileError, match="no questions"):
        load_golden(write_golden(tmp_path, "", "  "))
    with pytest.raises(GoldenFileError, match="cannot read it"):
        load_golden(tmp_path / "absent.jsonl")


# -- the real command --------------------------------------------------------------------------

QUESTIONS: list[dict[str, Any]] = [
    {"id": "budget-it",
     "question": "What is the approved budget of the IT Modernisation Programme?",
     "source": {"path": "finance/board-minutes-2026-03.pdf", "page": 2}, "facts": ["1,980,000"]},
    {"id": "budget-harbour",
     "question": "What is the approved budget of the Harbour Renovation Project?",
     "source": {"path": "sample-share/finance/harbour-renovation-memo.png"}},
    {"id": "meals", "question": "What is the daily meal allowance for travel within Germany?",
     "sources": [{"path": "policies/travel-and-expenses.md"}, {"path": "hr/allowances.pdf"}]},
    {"id": "football", "question": "Who won the football world cup in 2014?", "unanswerable": True},
]  # fmt: skip


def _rank(question: dict[str, Any], hits: list[dict[str, Any]]) -> int | None:
    sources = [question["source"]] if "source" in question else question.get("sources", [])
    for rank, found in enumerate(hits, start=1):
        for source in sources:
            on_page = source.get("page") in (None, found["page"])
            if found["path"].endswith("/" + source["path"]) and on_page:
                return rank
    return None


@pytest.fixture
def eval_env(cli_env: dict[str, str], ingested: Settings) -> dict[str, str]:
    return {**cli_env, "RAG_DATA_DIR": str(ingested.data_dir), "RAG_LLM__PORT": str(free_port())}


def test_rag_eval_retrieval_only_reports_what_the_real_search_finds(
    eval_env: dict[str, str], tmp_path: Path
) -> None:
    path = write_golden(tmp_path, *(json.dumps(q) for q in QUESTIONS))
    report = rag_json(eval_env, "eval", str(path), "--retrieval-only")
    assert set(report) == {
        "questions", "answerable", "unanswerable", "recall@1", "recall@5", "recall@10",
        "mrr@10", "cited_right", "refused_unanswerable", "refused_answerable", "facts",
        "quoted", "calibration", "seconds", "splits", "misses",
    }  # fmt: skip
    assert (report["questions"], report["answerable"], report["unanswerable"]) == (4, 3, 1)
    ranks = []
    for question in QUESTIONS[:3]:
        hits = rag_json(eval_env, "search", question["question"], "--k", "10")["hits"]
        ranks.append(_rank(question, hits))
    assert ranks[0] == 1  # the minutes' page 2 holds the programme's budget
    found = [r for r in ranks if r is not None]
    for depth in (1, 5, 10):
        assert report[f"recall@{depth}"] == round(sum(r <= depth for r in found) / 3, 4)
    assert report["mrr@10"] == round(sum(1 / r for r in found) / 3, 4)
    for key in ("cited_right", "refused_unanswerable", "refused_answerable", "facts"):
        assert report[key] is None
    missed = {m["id"] for m in report["misses"]}
    assert missed == {q["id"] for q, r in zip(QUESTIONS, ranks, strict=False) if r != 1}
    assert all(m["kind"] == "retrieval" for m in report["misses"])


def test_rag_eval_prints_a_table_for_people(eval_env: dict[str, str], tmp_path: Path) -> None:
    path = write_golden(tmp_path, json.dumps(QUESTIONS[0]))
    result = rag(eval_env, "eval", str(path), "--retrieval-only")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1 question (1 answerable, 0 unanswerable) in ")
    assert re.search(r"^  recall@1 +1\.000  source is the first hit$", result.stdout, re.M)
    assert re.search(r"^  cited_right +-  ", result.stdout, re.M)


def test_rag_eval_split_measures_only_that_split(eval_env: dict[str, str], tmp_path: Path) -> None:
    lines = [
        json.dumps({**QUESTIONS[0], "split": "test"}),
        json.dumps({**QUESTIONS[1]}),  # no split: dev
        json.dumps({**QUESTIONS[3], "split": "test"}),
    ]
    path = write_golden(tmp_path, *lines)
    test = rag_json(eval_env, "eval", str(path), "--retrieval-only", "--split", "test")
    assert (test["questions"], test["answerable"], list(test["splits"])) == (2, 1, ["test"])
    dev = rag_json(eval_env, "eval", str(path), "--retrieval-only", "--split", "dev")
    assert (dev["questions"], list(dev["splits"])) == (1, ["dev"])
    only_dev = write_golden(tmp_path, json.dumps(QUESTIONS[1]))
    result = rag(eval_env, "eval", str(only_dev), "--retrieval-only", "--split", "test")
    assert result.returncode == 2
    assert_one_line_error(result)
    assert "no questions in the test split" in result.stderr


def test_rag_eval_of_a_bad_golden_file_exits_2_naming_file_and_line(
    eval_env: dict[str, str], tmp_path: Path
) -> None:
    path = write_golden(tmp_path, json.dumps(QUESTIONS[0]), '{"question": "Q?", "answer": "x"}')
    result = rag(eval_env, "eval", str(path), "--retrieval-only")
    assert result.returncode == 2
    assert_one_line_error(result)
    assert f"{path} line 2: unknown key 'answer'" in result.stderr


def test_rag_eval_for_an_unknown_user_exits_2(eval_env: dict[str, str], tmp_path: Path) -> None:
    path = write_golden(tmp_path, json.dumps(QUESTIONS[0]))
    result = rag(eval_env, "eval", str(path), "--retrieval-only", "--user", "mallory")
    assert result.returncode == 2
    assert_one_line_error(result)
    assert "unknown user" in result.stderr


def test_rag_eval_without_an_llm_server_exits_1_with_what_to_do(
    eval_env: dict[str, str], tmp_path: Path
) -> None:
    path = write_golden(tmp_path, json.dumps(QUESTIONS[0]))
    result = rag(eval_env, "eval", str(path), "--json")
    assert result.returncode == 1
    assert_one_line_error(result)
    assert "rag up" in result.stderr and "--retrieval-only" in result.stderr


@pytest.mark.integration
def test_rag_eval_with_the_real_llm_server_reports_the_answer_figures(
    eval_env: dict[str, str], llm_settings: Settings, tmp_path: Path
) -> None:
    live = {**eval_env, "RAG_LLM__PORT": str(llm_settings.llm.port)}
    path = write_golden(tmp_path, *(json.dumps(q) for q in QUESTIONS))
    report = rag_json(live, "eval", str(path))
    for key in ("cited_right", "refused_answerable", "facts"):
        assert report[key] is not None and 0 <= report[key] <= 1, key
    assert report["refused_unanswerable"] == 1  # nothing in the share is about football
    misses = report["misses"]
    refused = sum(m["kind"] == "refusal" for m in misses)
    assert report["refused_answerable"] == round(refused / 3, 4)
    cited_wrong = sum(m["kind"] == "citation" for m in misses)
    assert report["cited_right"] == round((3 - refused - cited_wrong) / 3, 4)


class ChatAtABarrier:
    """The real chat model, whose questions each wait until `together` of them have arrived: a
    run that sends fewer at once breaks the barrier (after a minute) instead of passing."""

    def __init__(self, chat: Completer, together: int) -> None:
        self._chat = chat
        self._barrier = threading.Barrier(together, timeout=60)

    def complete(self, messages: Sequence[Message]) -> str:
        self._barrier.wait()
        return self._chat.complete(messages)


class AnswererWithChat:
    """The real answerer, its model's replies asked through `chat`."""

    def __init__(self, answerer: Answerer, chat: Completer) -> None:
        self._answerer = answerer
        self.chat = chat

    def prepare(self, question: str, scope: Scope) -> PreparedQuestion:
        return self._answerer.prepare(question, scope)

    def finish(self, prepared: PreparedQuestion, text: str) -> Answer:
        return self._answerer.finish(prepared, text)


@pytest.mark.integration
def test_an_evaluation_sends_questions_to_the_model_together_and_keeps_their_order(
    ingested: Settings, llm_settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(ingested.data_dir, data)
    parts = Parts(make_settings(data, llm={"port": llm_settings.llm.port}))
    harbour = QUESTIONS[1]
    path = write_golden(tmp_path, *(json.dumps({**harbour, "id": f"h{n}"}) for n in range(4)))
    answerer = AnswererWithChat(parts.answerer, ChatAtABarrier(parts.answerer.chat, together=2))
    try:
        outcomes = run(load_golden(path), parts.retriever, answerer, Scope.operator(), parallel=2)
    finally:
        parts.close()
    assert [outcome.golden.item.id for outcome in outcomes] == ["h0", "h1", "h2", "h3"]
    for outcome in outcomes:
        assert outcome.answer is not None and "4,750,000" in outcome.answer.text


def test_rag_eval_with_a_parallel_of_zero_exits_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    path = write_golden(tmp_path, json.dumps(QUESTIONS[0]))
    result = rag(cli_env, "eval", str(path), "--parallel", "0")
    assert result.returncode == 2
    assert_one_line_error(result)
    assert "--parallel" in result.stderr and "at least 1" in result.stderr
