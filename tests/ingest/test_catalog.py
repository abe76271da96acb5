from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.users import User
from ingest.catalog import Catalog, CatalogEntry, folded_words, is_abbreviation
from ingest.context import Profile
from ingest.ledger import FileRecord, Ledger, LedgerReader, Status
from retrieval.access import Scope, denied
from retrieval.models import document_id

SID_A = "sid:S-1-5-21-1-2-3-1104"
SID_B = "sid:S-1-5-21-1-2-3-1107"


def record(
    path: str,
    acl: set[str],
    status: Status = "indexed",
    error: str | None = None,
    pages: int = 3,
    parser: str = "pdf",
) -> FileRecord:
    return FileRecord(
        path, 100, 1.0, "sha-" + path, document_id(path), frozenset(acl), status, error,
        pages=pages, chunks=7, parser=parser,
    )  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    ledger.put_many(
        [
            record("/share/finance/Budget-2026.pdf", {"group:finance"}),
            record("/share/finance/board-minutes.PDF", {"group:finance", "user:carol"}),
            record("/share/hr/salaries.xlsx", {"user:bob"}, parser="xlsx"),
            record("/share/public/handbook.docx", {"everyone"}, pages=12),
            record("/share/fin/forecast.txt", {"group:fin"}),
            record("/share/finance/broken.pdf", {"group:finance"}, "failed", error="bad xref"),
            record("/share/finance/half.pdf", {"group:finance"}, "indexing"),
            record("/share/finance/huge.iso", set(), "skipped", error="unsupported type"),
        ]
    )
    yield ledger
    ledger.close()


@pytest.fixture
def catalog(ledger: Ledger, tmp_path: Path) -> Catalog:
    return Catalog(tmp_path / "ledger.sqlite3")


def scope_of(name: str, *groups: str) -> Scope:
    return User(name, groups, admin=False).scope


def paths(entries: list[CatalogEntry]) -> list[str]:
    return [e.path for e in entries]


def test_a_user_sees_only_indexed_files_whose_acl_names_one_of_their_principals(
    catalog: Catalog,
) -> None:
    assert paths(catalog.documents(scope_of("alice", "finance"))) == [
        "/share/finance/board-minutes.PDF",
        "/share/finance/Budget-2026.pdf",
        "/share/public/handbook.docx",
    ]
    assert paths(catalog.documents(scope_of("bob"))) == [
        "/share/hr/salaries.xlsx",
        "/share/public/handbook.docx",
    ]
    assert paths(catalog.documents(scope_of("carol"))) == [
        "/share/finance/board-minutes.PDF",
        "/share/public/handbook.docx",
    ]


def test_a_group_whose_name_is_a_prefix_of_another_does_not_see_its_files(
    catalog: Catalog,
) -> None:
    seen = paths(catalog.documents(Scope.of({"group:fin"})))
    assert seen == ["/share/fin/forecast.txt"]


def test_the_empty_scope_sees_nothing_and_the_operator_sees_every_indexed_file(
    catalog: Catalog,
) -> None:
    assert catalog.documents(Scope.of(set())) == []
    assert paths(catalog.documents(Scope.operator())) == [
        "/share/fin/forecast.txt",
        "/share/finance/board-minutes.PDF",
        "/share/finance/Budget-2026.pdf",
        "/share/hr/salaries.xlsx",
        "/share/public/handbook.docx",
    ]


def test_a_deny_entry_in_a_files_acl_hides_it_from_the_scopes_holding_the_denied_principal(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path / "deny" / "ledger.sqlite3")
    ledger.put_many(
        [
            record("/share/hr/payroll.xlsx", {SID_A, denied(SID_B)}),
            record("/share/quarantine/leak.pdf", {"everyone", SID_A, denied("everyone")}),
            record("/share/public/handbook.docx", {"everyone", denied("group:interns")}),
        ]
    )
    ledger.close()
    catalog = Catalog(tmp_path / "deny" / "ledger.sqlite3")
    assert paths(catalog.documents(Scope.of({SID_A}))) == ["/share/hr/payroll.xlsx"]
    assert paths(catalog.documents(Scope.of({SID_A, SID_B}))) == []
    assert paths(catalog.documents(scope_of("carol"))) == ["/share/public/handbook.docx"]
    assert paths(catalog.documents(scope_of("ivan", "interns"))) == []
    assert paths(catalog.documents(Scope.operator())) == [
        "/share/hr/payroll.xlsx",
        "/share/public/handbook.docx",
        "/share/quarantine/leak.pdf",
    ]


def test_an_entry_carries_what_the_library_page_shows(catalog: Catalog) -> None:
    before = time.time()
    (entry,) = catalog.documents(scope_of("bob"), name_contains="SALARIES")
    assert entry.folder == "/share/hr"
    assert entry.name == "salaries.xlsx"
    assert entry.file_type == "xlsx"
    assert (entry.pages, entry.chunks, entry.status, entry.parser) == (3, 7, "indexed", "xlsx")
    assert entry.doc_id == document_id("/share/hr/salaries.xlsx")
    assert before - 60 < entry.indexed_at.timestamp() <= time.time()
    assert entry.indexed_at.tzinfo is not None


def test_the_name_filter_ignores_case_and_matches_only_the_file_name(catalog: Catalog) -> None:
    alice = scope_of("alice", "finance")
    assert paths(catalog.documents(alice, "pdf")) == [
        "/share/finance/board-minutes.PDF",
        "/share/finance/Budget-2026.pdf",
    ]
    assert catalog.documents(alice, "finance") == []  # the folder's name is not the file's
    assert paths(catalog.documents(alice, "budget")) == ["/share/finance/Budget-2026.pdf"]


def test_the_name_filter_never_reveals_files_outside_the_scope(catalog: Catalog) -> None:
    assert catalog.documents(scope_of("alice", "finance"), "salaries") == []


def test_failed_files_are_listed_with_their_reasons(catalog: Catalog) -> None:
    (failed,) = catalog.failed()
    assert (failed.path, failed.status, failed.error) == (
        "/share/finance/broken.pdf",
        "failed",
        "bad xref",
    )
    both = catalog.failed(include_skipped=True)
    assert [(e.name, e.error) for e in both] == [
        ("broken.pdf", "bad xref"),
        ("huge.iso", "unsupported type"),
    ]


def test_the_catalog_sees_rows_written_after_it_was_opened(
    catalog: Catalog, ledger: Ledger
) -> None:
    ledger.put(record("/share/public/new-memo.md", {"everyone"}))
    assert "/share/public/new-memo.md" in paths(catalog.documents(scope_of("bob")))
    ledger.remove("/share/hr/salaries.xlsx")
    assert "/share/hr/salaries.xlsx" not in paths(catalog.documents(scope_of("bob")))


def test_a_missing_ledger_is_an_empty_library_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "ledger.sqlite3"
    catalog = Catalog(missing)
    assert catalog.documents(Scope.operator()) == []
    assert catalog.failed() == []
    assert not missing.exists()


def test_the_ledger_reader_cannot_write_to_the_ledger(catalog: Catalog, tmp_path: Path) -> None:
    reader = LedgerReader(catalog._ledger.path)
    with pytest.raises(Exception, match="readonly"):
        reader._rows("DELETE FROM files", ())
    assert reader.version() is not None and reader._watcher is not None
    with pytest.raises(Exception, match="readonly"):
        reader._watcher.execute("DELETE FROM files")
    reader.close()
    assert len(catalog.documents(Scope.operator())) == 5


# -- names -------------------------------------------------------------------------------

DORA = ("DORA", "Digital Operational Resilience Act")
GDPR = ("GDPR", "General Data Protection Regulation")
ICT = ("ICT", "information and communication technology")
ICT_CAPITALISED = ("ICT", "Information and Communication Technology")
DSGVO = ("DSGVO", "Datenschutz-Grundverordnung")
EU = ("EU", "European Union")
NIS2 = ("NIS2", "Network and Information Security Directive")
RGPD = ("RGPD", "règlement général sur la protection des données")
CSRD = ("CSRD", "Corporate Sustainability Reporting Directive")


def defining(
    path: str, acl: set[str], *names: tuple[str, str], status: Status = "indexed"
) -> FileRecord:
    """A ledger row as ingestion writes it for a file that defines `names`."""
    return replace(
        record(path, acl, status), profile=Profile(titles=(path,), names=names).to_json()
    )


# Rows in this order on purpose: not the order of the paths nor of the names, and DORA is
# defined first by a file only the legal group reads, then by one everyone reads.
NAMED_FILES = [
    ("/share/legal/z-dora.md", {"group:legal"}, [DORA, ICT]),
    ("/share/public/a-gdpr.md", {"everyone"}, [GDPR, DORA]),
    ("/share/hr/dsgvo.md", {"group:hr", "user:carol"}, [DSGVO, EU]),
    ("/share/finance/nis.md", {"group:finance"}, [NIS2, ICT_CAPITALISED]),
    ("/share/legal/rgpd.md", {"group:legal", "user:alice"}, [RGPD]),
    (
        "/share/public/act.md",
        {"everyone"},
        [("the Regulation", "Regulation (EU) 2016/679"), ("IV", "Annex Four")],
    ),
]
NAME_SCOPES = {
    "alice in finance": scope_of("alice", "finance"),
    "bob in hr": scope_of("bob", "hr"),
    "carol": scope_of("carol"),
    "dan in legal": scope_of("dan", "legal"),
    "a prefix of finance": Scope.of({"group:fin"}),
    "everyone alone": Scope.of({"everyone"}),
    "the operator": Scope.operator(),
    "nobody": Scope.of(set()),
}
NAME_QUERIES = [
    "When does DORA apply?",
    "dora and GDPR",
    "GDPR or DORA",
    "What does the digital operational resilience act say about ICT risk?",
    "Information and communication technology under NIS2",
    "DSGVO in der EU",
    "eu rules",
    "EU",
    "Règlement général sur la protection des données",
    "reglement general sur la protection des donnees",
    "the Regulation in annex IV",
    "nothing named here",
    "   ",
]


@pytest.fixture
def named_ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(tmp_path / "names" / "ledger.sqlite3")
    ledger.put_many([defining(path, acl, *names) for path, acl, names in NAMED_FILES])
    ledger.put(defining("/share/public/draft.md", {"everyone"}, CSRD, status="failed"))
    yield ledger
    ledger.close()


def names_by_sql(ledger_path: Path, scope: Scope, query: str) -> list[tuple[str, str]]:
    """The names a query uses as one SQL pass over the ledger finds them: the lookup the
    catalog's table must agree with, row order included."""
    if scope.sees_nothing or not query.strip():
        return []
    lowered = query.lower()
    statement = (
        "SELECT DISTINCT json_extract(n.value, '$[0]'), json_extract(n.value, '$[1]') "
        "FROM files, json_each(files.profile, '$.names') AS n "
        "WHERE files.status = 'indexed' AND files.profile IS NOT NULL "
        "AND (instr(?, lower(json_extract(n.value, '$[0]'))) > 0 "
        "OR instr(?, lower(json_extract(n.value, '$[1]'))) > 0)"
    )
    parameters: tuple[object, ...] = (lowered, lowered)
    if not scope.unrestricted:
        statement += (
            " AND EXISTS (SELECT 1 FROM json_each(files.acl) AS acl "
            "WHERE acl.value IN (SELECT value FROM json_each(?)))"
            " AND NOT EXISTS (SELECT 1 FROM json_each(files.acl) AS acl "
            "WHERE acl.value IN (SELECT value FROM json_each(?)))"
        )
        parameters += (json.dumps(sorted(scope.principals)), json.dumps(sorted(scope.denials)))
    database = sqlite3.connect(ledger_path)
    try:
        rows = database.execute(statement, parameters).fetchall()
    finally:
        database.close()
    words = folded_words(query)
    joined = f" {' '.join(words)} "
    found: dict[tuple[str, str], None] = {}
    for short, long in rows:
        if not is_abbreviation(short):
            continue
        folded_short = " ".join(folded_words(short))
        typed = short in query.split() if len(short) < 3 else folded_short in words
        if typed or f" {' '.join(folded_words(long))} " in joined:
            found[(short, long)] = None
    return list(found)


def test_names_are_those_one_sql_pass_over_the_ledger_finds_for_every_scope(
    named_ledger: Ledger, tmp_path: Path
) -> None:
    ledger_path = tmp_path / "names" / "ledger.sqlite3"
    catalog = Catalog(ledger_path)
    for label, scope in NAME_SCOPES.items():
        for query in NAME_QUERIES:
            expected = names_by_sql(ledger_path, scope, query)
            assert catalog.names_in(scope, query) == expected, (label, query)


def test_names_come_in_the_order_the_scope_s_readable_rows_define_them(
    named_ledger: Ledger, tmp_path: Path
) -> None:
    catalog = Catalog(tmp_path / "names" / "ledger.sqlite3")
    assert catalog.names_in(NAME_SCOPES["dan in legal"], "GDPR or DORA") == [DORA, GDPR]
    assert catalog.names_in(NAME_SCOPES["everyone alone"], "GDPR or DORA") == [GDPR, DORA]
    question = "What does the digital operational resilience act say about ICT risk?"
    assert catalog.names_in(NAME_SCOPES["the operator"], question) == [DORA, ICT, ICT_CAPITALISED]
    assert catalog.names_in(NAME_SCOPES["alice in finance"], question) == [
        DORA,
        ICT_CAPITALISED,
    ]
    assert catalog.names_in(NAME_SCOPES["nobody"], question) == []
    assert catalog.names_in(NAME_SCOPES["a prefix of finance"], "NIS2") == []
    assert catalog.names_in(NAME_SCOPES["bob in hr"], "eu rules") == []  # "EU" must be typed
    assert catalog.names_in(NAME_SCOPES["bob in hr"], "EU") == [EU]
    # Not an abbreviation, a roman numeral, a file that failed: never names.
    assert catalog.names_in(Scope.operator(), "the Regulation in annex IV") == []
    assert catalog.names_in(Scope.operator(), CSRD[0]) == []


def test_a_name_ingested_after_the_first_lookup_is_found_and_a_removed_one_is_gone(
    named_ledger: Ledger, tmp_path: Path
) -> None:
    catalog = Catalog(tmp_path / "names" / "ledger.sqlite3")
    carol = NAME_SCOPES["carol"]
    assert catalog.names_in(carol, "CSRD reporting") == []
    named_ledger.put(defining("/share/hr/csrd.md", {"user:carol"}, CSRD))
    assert catalog.names_in(carol, "CSRD reporting") == [CSRD]
    named_ledger.remove("/share/hr/csrd.md")
    assert catalog.names_in(carol, "CSRD reporting") == []


def test_a_revoked_acl_takes_the_name_away_from_those_who_lost_the_file(
    named_ledger: Ledger, tmp_path: Path
) -> None:
    catalog = Catalog(tmp_path / "names" / "ledger.sqlite3")
    carol, bob = NAME_SCOPES["carol"], NAME_SCOPES["bob in hr"]
    assert catalog.names_in(carol, "DSGVO") == [DSGVO]
    named_ledger.put(defining("/share/hr/dsgvo.md", {"group:hr"}, DSGVO, EU))
    assert catalog.names_in(carol, "DSGVO") == []
    assert catalog.names_in(bob, "DSGVO") == [DSGVO]


def test_a_name_is_not_given_to_a_scope_its_only_defining_file_denies(
    named_ledger: Ledger, tmp_path: Path
) -> None:
    catalog = Catalog(tmp_path / "names" / "ledger.sqlite3")
    named_ledger.put(defining("/share/hr/csrd.md", {"group:hr", denied("user:bob")}, CSRD))
    assert catalog.names_in(NAME_SCOPES["bob in hr"], "CSRD") == []
    assert catalog.names_in(scope_of("hanna", "hr"), "CSRD") == [CSRD]
    named_ledger.put(defining("/share/hr/csrd.md", {"group:hr", denied("everyone")}, CSRD))
    assert catalog.names_in(scope_of("hanna", "hr"), "CSRD") == []
    assert catalog.names_in(Scope.operator(), "CSRD") == [CSRD]


def test_the_names_are_read_again_only_when_the_ledger_changed(
    named_ledger: Ledger, tmp_path: Path
) -> None:
    catalog = Catalog(tmp_path / "names" / "ledger.sqlite3")
    first = catalog._names()
    assert catalog._names() is first
    catalog.documents(Scope.operator())  # reading the ledger is not changing it
    assert catalog._names() is first
    named_ledger.put(defining("/share/hr/csrd.md", {"user:carol"}, CSRD))
    assert catalog._names() is not first


def test_the_names_of_a_ledger_no_one_writes_to_are_read_once(tmp_path: Path) -> None:
    ledger_path = tmp_path / "data" / "ledger.sqlite3"
    ledger = Ledger(ledger_path)
    ledger.put(defining("/share/a.md", {"everyone"}, DORA))
    ledger.close()  # its write-ahead log is gone, until a reader opens the ledger again
    catalog = Catalog(ledger_path)
    first = catalog._names()
    assert catalog.names_in(Scope.operator(), "DORA") == [DORA]
    assert catalog._names() is first


def test_a_ledger_deleted_and_written_anew_is_read_anew(tmp_path: Path) -> None:
    ledger_path = tmp_path / "data" / "ledger.sqlite3"
    ledger = Ledger(ledger_path)
    ledger.put(defining("/share/a.md", {"everyone"}, DORA))
    catalog = Catalog(ledger_path)
    assert catalog.names_in(Scope.operator(), "DORA or GDPR") == [DORA]
    ledger.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger_path}{suffix}").unlink(missing_ok=True)
    anew = Ledger(ledger_path)
    try:
        anew.put(defining("/share/b.md", {"everyone"}, GDPR))
        assert catalog.names_in(Scope.operator(), "DORA or GDPR") == [GDPR]
    finally:
        anew.close()


def test_names_appear_once_a_missing_ledger_is_written(tmp_path: Path) -> None:
    ledger_path = tmp_path / "data" / "ledger.sqlite3"
    catalog = Catalog(ledger_path)
    assert catalog.names_in(Scope.operator(), "DORA") == []
    assert not ledger_path.exists()
    ledger = Ledger(ledger_path)
    try:
        assert catalog.names_in(Scope.operator(), "DORA") == []  # no row yet
        ledger.put(defining("/share/a.md", {"everyone"}, DORA))
        assert catalog.names_in(Scope.operator(), "DORA") == [DORA]
    finally:
        ledger.close()


def test_lookups_from_many_threads_while_the_ledger_changes_stay_correct(
    named_ledger: Ledger, tmp_path: Path
) -> None:
    catalog = Catalog(tmp_path / "names" / "ledger.sqlite3")
    carol = NAME_SCOPES["carol"]
    seen: list[list[tuple[str, str]]] = []

    def look_up() -> None:
        for _ in range(200):
            seen.append(catalog.names_in(carol, "DSGVO and CSRD"))

    with ThreadPoolExecutor(4) as pool:
        lookups = [pool.submit(look_up) for _ in range(4)]
        for number in range(20):
            named_ledger.put(defining(f"/share/hr/csrd-{number}.md", {"user:carol"}, CSRD))
        for lookup in lookups:
            lookup.result()
    assert len(seen) == 800
    assert all(names in ([DSGVO], [DSGVO, CSRD]) for names in seen)
    assert catalog.names_in(carol, "DSGVO and CSRD") == [DSGVO, CSRD]


def test_names_agree_with_the_sql_pass_on_a_generated_ledger(tmp_path: Path) -> None:
    """Accents, short forms under three letters, repeated and capitalised names, files of
    every status and overlapping ACLs, drawn at random: the table finds what SQL finds."""
    rng = random.Random(5)
    shorts = ["DORA", "GDPR", "EU", "ICT", "NIS2", "DSGVO", "ÄBC", "ÉCB", "KI", "AB", "IV",
              "COVID-19", "A.B.", "ÜV", "eu"]  # fmt: skip
    longs = ["Digital Operational Resilience Act", "European Union", "union",
             "Europäische Zentralbank", "règlement général", "Künstliche Intelligenz",
             "Kunstliche Intelligenz", "", "A B",
             "information and communication technology"]  # fmt: skip
    principals = ["everyone", "group:a", "group:b", "group:ab", "user:x", "group:fin"]
    entries = principals + [denied("group:a"), denied("user:x"), denied("everyone")]
    statuses: list[Status] = ["indexed"] * 5 + ["failed", "skipped", "indexing"]
    ledger_path = tmp_path / "generated" / "ledger.sqlite3"
    ledger = Ledger(ledger_path)
    ledger.put_many(
        [
            defining(
                f"/share/{number}.md",
                set(rng.sample(entries, rng.randint(0, 3))),
                *[(rng.choice(shorts), rng.choice(longs)) for _ in range(rng.randint(0, 4))],
                status=rng.choice(statuses),
            )
            for number in range(200)
        ]
    )
    ledger.close()
    scopes = [Scope.operator(), Scope.of(set())] + [
        Scope.of(set(rng.sample(principals, rng.randint(1, 3)))) for _ in range(6)
    ]
    vocabulary = ["what", "is", "the", "der", "la", "apply", *shorts]
    vocabulary += [word for long in longs for word in long.split()]
    catalog = Catalog(ledger_path)
    found_some = 0
    for _ in range(100):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 7))]
        if rng.random() < 0.3:
            words.insert(rng.randint(0, len(words)), rng.choice(longs).lower())
        query = " ".join(words)
        for scope in scopes:
            names = catalog.names_in(scope, query)
            assert names == names_by_sql(ledger_path, scope, query), (scope, query)
            found_some += bool(names)
    assert found_some > 200  # most lookups find names: the comparison is not of empty lists
