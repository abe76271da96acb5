"""What a document is travels with its passages: a question naming an act by its subject
or its abbreviation finds the article that answers it, though the article never names it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from appliance.erase import erase
from ingest.catalog import Catalog
from ingest.context import (
    CONTEXT_MAX_CHARS,
    Profile,
    context_of,
    defined_names,
    series_names,
)
from ingest.ledger import Ledger
from ingest.pipeline import Ingestor
from retrieval.access import Scope
from retrieval.build import build_sparse, build_store
from retrieval.retriever import Retriever
from settings import Settings
from tests.conftest import make_settings
from tests.retrieval.generated_acts import Act, write_acts


@pytest.fixture
def acts_index(tmp_path: Path, embedder: Any) -> tuple[Settings, Ingestor, list[Act]]:
    acts = write_acts(tmp_path / "share")
    settings = make_settings(tmp_path / "data")
    ingestor = Ingestor(settings, embedder, build_store(settings), Ledger(settings.ledger_path))
    report = ingestor.run([str(tmp_path / "share")])
    assert report.failed == []
    return settings, ingestor, acts


def retriever_of(settings: Settings, ingestor: Ingestor) -> Retriever:
    return Retriever(
        ingestor._embedder,
        ingestor._store,
        build_sparse(settings),
        names=Catalog(settings.ledger_path),
    )


def test_a_question_naming_an_act_finds_the_article_that_never_names_it(
    acts_index: tuple[Settings, Ingestor, list[Act]],
) -> None:
    settings, ingestor, acts = acts_index
    retriever = retriever_of(settings, ingestor)
    missed = []
    for act in acts:
        for question in act.questions():
            hits = retriever.search(question, Scope.operator(), 5)
            if str(act.application_file) not in [hit.chunk.path for hit in hits]:
                missed.append(question)
    assert missed == []


def test_the_context_is_indexed_but_never_part_of_the_passage(
    acts_index: tuple[Settings, Ingestor, list[Act]],
) -> None:
    settings, ingestor, acts = acts_index
    act = acts[0]
    chunks = ingestor._store.document_chunks(
        Ledger(settings.ledger_path).get(str(act.application_file)).doc_id  # type: ignore[union-attr]
    )
    chunk = chunks[0][0]
    assert act.abbreviation not in chunk.text and act.full_name not in chunk.text
    assert f"{act.full_name} ({act.abbreviation})" in chunk.context
    assert chunk.context in chunk.embedding_text()
    assert len(chunk.context) <= CONTEXT_MAX_CHARS


def test_an_abbreviation_is_searched_with_its_full_name_for_whoever_may_read_it(
    acts_index: tuple[Settings, Ingestor, list[Act]],
) -> None:
    settings, ingestor, acts = acts_index
    retriever = retriever_of(settings, ingestor)
    act = acts[1]
    question = f"From which date does {act.abbreviation} apply?"
    assert retriever.expanded(question, Scope.operator()) == f"{question} ({act.full_name})"
    spelled = f"Who enforces the {act.full_name.lower()}?"
    assert retriever.expanded(spelled, Scope.operator()) == f"{spelled} ({act.abbreviation})"
    stranger = Scope.of({"user:nobody"})
    assert retriever.expanded(question, stranger) == question


def test_erasing_the_article_that_names_an_act_takes_the_name_out_of_the_others(
    acts_index: tuple[Settings, Ingestor, list[Act]],
) -> None:
    settings, ingestor, acts = acts_index
    act = acts[2]
    defining = act.application_file.parent / "article-01.md"
    ingestor._store.close()
    erase(settings, path=str(defining))
    store = build_store(settings)
    ledger = Ledger(settings.ledger_path)
    try:
        for record in ledger.indexed_in_folder(str(act.application_file.parent)):
            assert act.abbreviation not in (record.context or "")
            for chunk, _ in store.document_chunks(record.doc_id):
                assert act.abbreviation not in chunk.embedding_text()
        names = Catalog(settings.ledger_path).names_in(Scope.operator(), act.abbreviation)
        assert names == []
    finally:
        store.close()
        ledger.close()


def test_a_new_file_that_names_the_act_reaches_the_articles_indexed_before_it(
    tmp_path: Path, embedder: Any
) -> None:
    acts = write_acts(tmp_path / "share")
    act = acts[3]
    defining = act.application_file.parent / "article-01.md"
    text = defining.read_text()
    defining.unlink()
    settings = make_settings(tmp_path / "data")
    ingestor = Ingestor(settings, embedder, build_store(settings), Ledger(settings.ledger_path))
    ingestor.run([str(tmp_path / "share")])
    record = ingestor._ledger.get(str(act.application_file))
    assert record is not None and act.abbreviation not in (record.context or "")
    defining.write_text(text)
    ingestor.run([str(tmp_path / "share")])
    record = ingestor._ledger.get(str(act.application_file))
    assert record is not None and f"({act.abbreviation})" in (record.context or "")
    chunk = ingestor._store.document_chunks(record.doc_id)[0][0]
    assert f"({act.abbreviation})" in chunk.context


@pytest.mark.parametrize(
    ("text", "name"),
    [
        (
            "This Regulation, the Digital Operational Resilience Act (DORA), applies.",
            ("DORA", "Digital Operational Resilience Act"),
        ),
        (
            "Le règlement général sur la protection des données (RGPD) s'applique.",
            ("RGPD", "règlement général sur la protection des données"),
        ),
        ("Die Datenschutz-Grundverordnung (DSGVO) gilt.", ("DSGVO", "Datenschutz-Grundverordnung")),
        (
            "on digital operational resilience for the financial sector (hereinafter 'DORA')",
            ("DORA", "on digital operational resilience for the financial sector"),
        ),
        (
            '"the Regulation" means Regulation (EU) 2016/679 of the European Parliament.',
            ("the Regulation", "Regulation EU 2016 679 of the European Parliament"),
        ),
        (
            "« le Règlement » désigne le règlement (UE) 2024/1689.",
            ("le Règlement", "le règlement UE 2024 1689"),
        ),
        (
            "dieser Vertrag (im Folgenden „der Vertrag“) regelt die Nutzung.",
            ("der Vertrag", "dieser Vertrag"),
        ),
    ],
)
def test_names_are_learned_from_english_french_and_german_phrasing(
    text: str, name: tuple[str, str]
) -> None:
    assert name in defined_names(text)


def test_what_is_not_a_name_is_not_learned() -> None:
    text = (
        "See Article 3 (IV) and Regulation (EU) 2016/679. 'personal data' means any "
        "information. The fee (EUR) is due. Payment terms (see Annex II) apply."
    )
    assert defined_names(text) == []


def test_the_context_is_bounded_and_puts_the_document_before_its_folder() -> None:
    own = Profile(("Regulation on lifts",), (("LSA", "Lift Safety Act"),))
    folder = {
        f"/share/act/part-{n}.md": Profile((), ((f"A{n}X", f"Another Name Number {n} Xtra"),))
        for n in range(40)
    }
    context = context_of(own, series_names(folder)["/share/act/part-#.md"])
    assert context.startswith("Regulation on lifts | Lift Safety Act (LSA)")
    assert len(context) <= CONTEXT_MAX_CHARS


def test_files_indexed_before_document_contexts_are_read_again_by_the_next_run(
    acts_index: tuple[Settings, Ingestor, list[Act]],
) -> None:
    settings, ingestor, acts = acts_index
    files = ingestor._ledger.totals()["documents"]
    database = sqlite3.connect(settings.ledger_path)
    database.execute("UPDATE files SET profile = NULL, context = NULL")
    database.commit()
    database.close()
    report = ingestor.run([str(acts[0].application_file.parents[2])])
    assert (report.updated, report.unchanged) == (files, 0)
    record = ingestor._ledger.get(str(acts[0].application_file))
    assert record is not None and f"({acts[0].abbreviation})" in (record.context or "")


def test_only_the_numbered_parts_of_one_work_share_their_names() -> None:
    profiles = {
        "/share/act/article-01.md": Profile((), (("LSA", "Lift Safety Act"),)),
        "/share/act/article-12.md": Profile(),
        "/share/manuals/hosts.txt": Profile((), (("NIC", "Network Information Center"),)),
        "/share/manuals/crontab.pdf": Profile(),
    }
    shared = series_names(profiles)
    assert list(shared) == ["/share/act/article-#.md"]
    assert "Lift Safety Act (LSA)" in context_of(Profile(), shared["/share/act/article-#.md"])
