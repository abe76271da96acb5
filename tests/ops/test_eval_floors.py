"""Answer quality with the embedded default, held to floors on the TEST splits of both
evaluation corpora: the generated one (`ops.tools.make_eval_corpus`) and the real Debian documents
in English, French and German (`ops.tools.make_real_corpus`). Each is generated, ingested with
`rag ingest` and its test split evaluated with `rag eval --split test` against the real LLM
server, as an operator would.

Only the test splits are held to the floors: rules and thresholds are tuned on the dev splits,
so a figure on test says how the appliance does on questions nobody tuned for. A floor the
current system does not reach yet is an expected failure naming the gap (issue 15), so that
the gap stays visible and the mark comes off when it closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops.evaluate import load_golden
from settings import Settings
from tests.conftest import RAG

# The issue's targets, on every test split.
FLOORS = {
    "recall@5": 0.92,
    "mrr@10": 0.80,
    "cited_right": 0.80,
    "refused_unanswerable": 0.85,
}
CROSS_LINGUAL_FLOORS = {"recall@5": 0.75}
CEILINGS = {"refused_answerable": 0.10}
CORPORA = {"generated": "ops.tools.make_eval_corpus", "real": "ops.tools.make_real_corpus"}
WITH_CROSS_LINGUAL = ("real",)  # the generated corpus asks in the language of each document

# The floors the embedded default (multilingual-e5-small, SmolLM2-135M) does not reach yet on a
# test split, with what it measured there: an expected failure each, and held to that measure
# (give or take one question) so that the gap cannot widen unnoticed. Refusals of answerable
# questions on the real split (3 of 35) are within the ceiling by one question.
KNOWN_GAPS = {
    ("real", "cited_right"): 0.771,
    ("real", "refused_unanswerable"): 0.750,
    ("real", "refused_answerable"): 0.086,
    ("generated", "refused_unanswerable"): 0.500,
}


def generate(root: Path, corpus: str) -> Path:
    """The corpus written under `root` by its generator: its folder (documents/, golden.jsonl)."""
    generated = subprocess.run(
        [sys.executable, "-m", CORPORA[corpus], str(root / "set")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    return root / "set"


def evaluate(corpus_dir: Path, llm_settings: Settings) -> dict[str, Any]:
    """Its documents ingested and its TEST split evaluated, with `rag` as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {"RAG_DATA_DIR": str(corpus_dir.parent / "data"),
            "RAG_LLM__PORT": str(llm_settings.llm.port)}  # fmt: skip
    ingested = subprocess.run(
        [str(RAG), "ingest", str(corpus_dir / "documents"), "--json"],
        env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["failed"] == []
    evaluated = subprocess.run(
        [str(RAG), "eval", str(corpus_dir / "golden.jsonl"), "--split", "test", "--json"],
        env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    report: dict[str, Any] = json.loads(evaluated.stdout)
    (corpus_dir.parent / "report.json").write_text(json.dumps(report, indent=2))
    return report


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        corpus: generate(tmp_path_factory.mktemp(f"eval-{corpus}"), corpus) for corpus in CORPORA
    }


@pytest.fixture(scope="module")
def reports(corpora: dict[str, Path], llm_settings: Settings) -> dict[str, Any]:
    return {corpus: evaluate(folder, llm_settings) for corpus, folder in corpora.items()}


def cases(figures: dict[str, float], cross_lingual: dict[str, float] | None = None) -> list[Any]:
    """(corpus, figure) for every corpus, a known gap marked as an expected failure."""
    out = []
    for corpus in CORPORA:
        names = list(figures)
        if cross_lingual and corpus in WITH_CROSS_LINGUAL:
            names += [f"cross_lingual {figure}" for figure in cross_lingual]
        for figure in names:
            gap = KNOWN_GAPS.get((corpus, figure))
            reason = f"issue 15: {figure} is {gap} on the {corpus} test split"
            marks = [pytest.mark.xfail(strict=False, reason=reason)] if gap else []
            out.append(pytest.param(corpus, figure, marks=marks, id=f"{corpus}-{figure}"))
    return out


def split_misses(report: dict[str, Any], split: str) -> str:
    misses = [m for m in report["misses"] if m["kind"] != "facts" and m.get("split") == split]
    return json.dumps(misses, indent=1)[:4000]


@pytest.mark.integration
@pytest.mark.parametrize(("corpus", "figure"), cases(FLOORS, CROSS_LINGUAL_FLOORS))
def test_the_test_split_stays_above_its_floor(
    reports: dict[str, Any], corpus: str, figure: str
) -> None:
    test = reports[corpus]["splits"]["test"]
    if figure.startswith("cross_lingual "):
        name = figure.removeprefix("cross_lingual ")
        value, floor = test["cross_lingual"][name], CROSS_LINGUAL_FLOORS[name]
    else:
        value, floor = test[figure], FLOORS[figure]
    assert value >= floor, split_misses(reports[corpus], "test")


@pytest.mark.integration
@pytest.mark.parametrize(("corpus", "figure"), cases(CEILINGS))
def test_the_test_split_stays_below_its_ceiling(
    reports: dict[str, Any], corpus: str, figure: str
) -> None:
    test = reports[corpus]["splits"]["test"]
    assert test[figure] <= CEILINGS[figure], split_misses(reports[corpus], "test")


@pytest.mark.integration
@pytest.mark.parametrize(("corpus", "figure"), sorted(KNOWN_GAPS))
def test_a_known_gap_does_not_widen(reports: dict[str, Any], corpus: str, figure: str) -> None:
    test = reports[corpus]["splits"]["test"]
    group, name = test, figure
    if figure.startswith("cross_lingual "):
        group, name = test["cross_lingual"], figure.removeprefix("cross_lingual ")
    asked = group["unanswerable"] if name == "refused_unanswerable" else group["answerable"]
    one_question = 1 / asked
    measured = KNOWN_GAPS[(corpus, figure)]
    if name in CEILINGS:
        assert group[name] <= measured + one_question, split_misses(reports[corpus], "test")
    else:
        assert group[name] >= measured - one_question, split_misses(reports[corpus], "test")


def test_both_corpora_have_the_size_the_issue_asks_for(corpora: dict[str, Path]) -> None:
    generated, real = (
        load_golden(corpora[name] / "golden.jsonl") for name in ("generated", "real")
    )
    assert len(generated) >= 80 and sum(not q.item.answerable for q in generated) >= 15
    assert 60 <= len(real) <= 100 and sum(not q.item.answerable for q in real) >= 8
    for questions in (generated, real):
        splits = [q.item.split_name for q in questions]
        assert set(splits) == {"dev", "test"}
        assert splits.count("test") >= 0.4 * len(questions)
