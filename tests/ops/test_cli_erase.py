"""`rag erase` as an operator runs it: the contract's JSON, exit codes, one-line errors, and a
document that stays erased across `rag ingest`, `--retry-failed` and `--rebuild`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from retrieval.models import document_id
from tests.conftest import SAMPLE_SHARE
from tests.ops.test_cli import assert_one_line_error, rag, rag_json

QUERY = "Procurement Office extension 4230 conflict of interest"


@pytest.fixture(scope="module")
def share(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("erase") / "share"
    for relative in ("finance/procurement-guidelines.pdf", "policies/travel-and-expenses.md"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SAMPLE_SHARE / relative, root / relative)
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, share: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["RAG_DATA_DIR"] = str(tmp_path_factory.mktemp("erase-data"))
    assert rag_json(env, "ingest", str(share))["indexed"] == 2
    return env


def paths_found(env: dict[str, str], query: str) -> set[str]:
    return {hit["path"] for hit in rag_json(env, "search", query, "--k", "10")["hits"]}


def test_erase_prints_the_contract_and_the_document_stays_erased(
    env: dict[str, str], share: Path
) -> None:
    pdf = str(share / "finance" / "procurement-guidelines.pdf")
    assert pdf in paths_found(env, QUERY)

    erased = rag_json(env, "erase", pdf, "--by", "dpo")

    assert {"doc_id", "chunks_removed", "remaining"} <= set(erased)
    assert erased["doc_id"] == document_id(pdf)
    assert erased["chunks_removed"] > 0 and erased["remaining"] == 0
    assert pdf not in paths_found(env, QUERY)
    [event] = [e for e in rag_json(env, "audit")["events"] if e["action"] == "erase"]
    assert event["user"] == "dpo"
    assert event["detail"]["doc_id"] == erased["doc_id"] and event["detail"]["path"] == pdf
    for extra in ((), ("--retry-failed",), ("--rebuild",)):
        report = rag_json(env, "ingest", str(share), *extra)
        assert report["skipped"] == 1, (extra, report)
        assert pdf not in paths_found(env, QUERY)
    status = rag_json(env, "status")
    assert status["erased"] == 1 and status["documents"] == 1
    again = rag_json(env, "erase", "--doc-id", erased["doc_id"])
    assert (again["chunks_removed"], again["remaining"]) == (0, 0)
    human = rag(env, "erase", pdf)
    assert human.returncode == 0 and "delete or move the file at the source" in human.stdout


def test_erase_of_an_unknown_path_exits_2_saying_where_paths_are_listed(
    env: dict[str, str], share: Path
) -> None:
    result = rag(env, "erase", str(share / "no-such-file.pdf"), "--json")
    assert result.returncode == 2
    assert_one_line_error(result)
    assert "Library" in result.stderr and "rag search" in result.stderr
    unknown_id = rag(env, "erase", "--doc-id", document_id("/nowhere.pdf"))
    assert unknown_id.returncode == 2
    assert_one_line_error(unknown_id)


def test_erase_needs_exactly_one_of_a_path_and_a_doc_id(env: dict[str, str], share: Path) -> None:
    for args in ((), (str(share), "--doc-id", "x")):
        result = rag(env, "erase", *args)
        assert result.returncode == 2, args
        assert_one_line_error(result)
