"""The VectorStore contract: every implementation passes the same tests on a real engine.

EdgeStore runs the Qdrant engine in-process (qdrant-edge); QdrantServerStore speaks to a
Qdrant server through qdrant-client, whose local mode stands in for the server here.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from retrieval import edge_store
from retrieval.access import EVERYONE, Scope, denied
from retrieval.edge_store import EdgeStore
from retrieval.errors import StoreUnavailable
from retrieval.models import Chunk, chunk_id, document_id
from retrieval.server_store import QdrantServerStore
from retrieval.sparse import SparseEncoder
from retrieval.store import DocumentVersion, SearchFilters, SearchQuery, VectorStore
from settings import PROJECT_ROOT

DIM = 4
OTHER_PROCESS_COUNTS = """
import sys
from pathlib import Path
from retrieval import edge_store
from retrieval.edge_store import EdgeStore
from retrieval.errors import StoreUnavailable
from retrieval.sparse import SparseEncoder
store = EdgeStore(Path(sys.argv[1]), SparseEncoder(["en"]), linger_seconds=0)
print(store.count())
"""
SPARSE = SparseEncoder(["en", "fr", "de"])
SID_A = "sid:S-1-5-21-1-2-3-1104"
SID_B = "sid:S-1-5-21-1-2-3-1107"


def query(vector: list[float], text: str = "") -> SearchQuery:
    return SearchQuery(text, vector)


def make_chunks(path: str, count: int, acl: set[str], start: int = 0) -> list[Chunk]:
    doc = document_id(path)
    return [
        Chunk(
            id=chunk_id(doc, ordinal),
            doc_id=doc,
            ordinal=ordinal,
            text=f"{path} passage {ordinal}",
            path=path,
            page=ordinal + 1,
            title="Title",
            section="Section",
            content_sha256="0" * 64,
            acl=frozenset(acl),
            mtime=1700000000.0,
        )
        for ordinal in range(start, start + count)
    ]


def gone_pid() -> int:
    """The id of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    return [f for f in folder.rglob("*") if f.is_file() and needle in f.read_bytes()]


def axis(i: int) -> list[float]:
    vector = [0.0] * DIM
    vector[i % DIM] = 1.0
    return vector


class StoreContract:
    """Mixin: subclasses provide a `store` fixture yielding an empty, ready store."""

    def test_an_empty_store_counts_zero_and_finds_nothing(self, store: VectorStore) -> None:
        assert store.count() == 0
        assert store.search(query(axis(0)), Scope.operator(), 5) == []

    def test_upsert_then_search_returns_the_closest_chunk_first(self, store: VectorStore) -> None:
        chunks = make_chunks("/share/a.pdf", 3, {EVERYONE})
        store.upsert(chunks, [axis(0), axis(1), axis(2)])
        hits = store.search(query(axis(1)), Scope.operator(), 3)
        assert [h.chunk.id for h in hits][0] == chunks[1].id
        assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
        assert hits[0].score >= hits[1].score >= hits[2].score
        assert [h.similarity for h in hits[1:]] == pytest.approx([0.0, 0.0], abs=1e-5)

    def test_search_returns_the_chunk_as_written(self, store: VectorStore) -> None:
        chunk = make_chunks("/share/ü ber/å.docx", 1, {"user:alice", "group:finance"})[0]
        store.upsert([chunk], [axis(0)])
        assert store.search(query(axis(0)), Scope.operator(), 1)[0].chunk == chunk

    def test_upserting_the_same_id_overwrites(self, store: VectorStore) -> None:
        chunks = make_chunks("/share/a.pdf", 2, {EVERYONE})
        store.upsert(chunks, [axis(0), axis(1)])
        store.upsert(chunks, [axis(0), axis(1)])
        assert store.count() == 2

    def test_a_scope_sees_only_chunks_sharing_a_principal(self, store: VectorStore) -> None:
        store.upsert(make_chunks("/share/finance.pdf", 1, {"group:finance"}), [axis(0)])
        store.upsert(make_chunks("/share/hr.pdf", 1, {"user:hanna"}), [axis(0)])
        store.upsert(make_chunks("/share/public.md", 1, {EVERYONE}), [axis(0)])

        def paths(scope: Scope) -> set[str]:
            return {h.chunk.path for h in store.search(query(axis(0)), scope, 10)}

        assert paths(Scope.of({"group:finance", EVERYONE})) == {
            "/share/finance.pdf",
            "/share/public.md",
        }
        assert paths(Scope.of({"user:hanna"})) == {"/share/hr.pdf"}
        assert paths(Scope.of({"user:nobody"})) == set()
        assert len(paths(Scope.operator())) == 3

    def test_no_principals_means_no_results(self, store: VectorStore) -> None:
        store.upsert(make_chunks("/share/public.md", 2, {EVERYONE}), [axis(0), axis(1)])
        assert store.search(query(axis(0)), Scope.of(set()), 10) == []

    def test_the_access_filter_applies_before_the_limit(self, store: VectorStore) -> None:
        # Many closer chunks the user may not read must not crowd out the one they may.
        store.upsert(make_chunks("/share/secret.pdf", 20, {"group:board"}), [axis(0)] * 20)
        store.upsert(make_chunks("/share/open.md", 1, {EVERYONE}), [axis(1)])
        hits = store.search(query(axis(0)), Scope.of({EVERYONE}), 3)
        assert [h.chunk.path for h in hits] == ["/share/open.md"]

    def test_a_deny_entry_hides_a_chunk_from_a_scope_holding_the_denied_principal(
        self, store: VectorStore
    ) -> None:
        store.upsert(make_chunks("/share/payroll.xlsx", 1, {SID_A, denied(SID_B)}), [axis(0)])

        def paths(scope: Scope) -> set[str]:
            return {h.chunk.path for h in store.search(query(axis(0), "passage"), scope, 10)}

        assert paths(Scope.of({SID_A})) == {"/share/payroll.xlsx"}
        assert paths(Scope.of({SID_A, SID_B})) == set()  # the deny wins over the allow
        assert paths(Scope.of({SID_B})) == set()

    def test_a_scope_allowed_by_no_entry_sees_nothing_even_when_none_denies_it(
        self, store: VectorStore
    ) -> None:
        store.upsert(make_chunks("/share/payroll.xlsx", 1, {SID_A, denied(SID_B)}), [axis(0)])
        assert store.search(query(axis(0), "passage"), Scope.of({"sid:S-1-5-21-1-2-3-1"}), 10) \
            == []  # fmt: skip

    def test_deny_everyone_hides_a_chunk_from_every_scope_but_the_operators(
        self, store: VectorStore
    ) -> None:
        chunk = make_chunks("/share/quarantine.pdf", 1, {EVERYONE, SID_A, denied(EVERYONE)})[0]
        store.upsert([chunk.model_copy(update={"text": "Steam", "language": "en"})], [axis(0)])
        steam = min(SPARSE.terms("steam", "en"))
        for scope in (Scope.of({EVERYONE}), Scope.of({SID_A}), Scope.of({EVERYONE, SID_A})):
            assert store.search(query(axis(0), "steam"), scope, 10) == []
            assert store.term_frequencies([steam], scope, 10) == {steam: 0}
        assert [h.chunk.id for h in store.search(query(axis(0)), Scope.operator(), 10)] == [
            chunk.id
        ]
        assert store.term_frequencies([steam], Scope.operator(), 10) == {steam: 1}

    def test_the_index_finds_what_may_read_allows_for_any_acl_and_scope(
        self, store: VectorStore
    ) -> None:
        rng = random.Random(11)
        principals = [EVERYONE, SID_A, SID_B, "group:interns", "user:alice"]
        entries = principals + [denied(p) for p in principals]
        chunks = [
            make_chunks(f"/share/{n}.md", 1, set(rng.sample(entries, rng.randint(0, 4))))[0]
            for n in range(60)
        ]
        store.upsert(chunks, [axis(n) for n in range(60)])
        scopes = [Scope.operator(), Scope.of(set())] + [
            Scope.of(set(rng.sample(principals, rng.randint(1, 3)))) for _ in range(12)
        ]
        for scope in scopes:
            found = {h.chunk.id for h in store.search(query(axis(0), "passage"), scope, 100)}
            assert found == {c.id for c in chunks if scope.may_read(c.acl)}, scope
        assert 0 < sum(Scope.of({SID_A}).may_read(c.acl) for c in chunks) < 60

    def test_a_path_filter_keeps_one_document(self, store: VectorStore) -> None:
        store.upsert(make_chunks("/share/a.pdf", 2, {EVERYONE}), [axis(0), axis(1)])
        store.upsert(make_chunks("/share/b.pdf", 2, {EVERYONE}), [axis(0), axis(1)])
        hits = store.search(
            query(axis(0)), Scope.operator(), 10, SearchFilters(path="/share/b.pdf")
        )
        assert {h.chunk.path for h in hits} == {"/share/b.pdf"}

    def test_filters_by_folder_type_language_and_date(self, store: VectorStore) -> None:
        files = [
            ("/share/finance/2025/budget.pdf", "en", 1_700_000_000.0),
            ("/share/finance/2024/budget.docx", "en", 1_650_000_000.0),
            ("/share/finance-old/notes.pdf", "en", 1_600_000_000.0),
            ("/share/rh/conges.pdf", "fr", 1_720_000_000.0),
        ]
        for path, language, mtime in files:
            chunk = make_chunks(path, 1, {EVERYONE})[0]
            store.upsert([chunk.model_copy(update={"language": language, "mtime": mtime})],
                         [axis(0)])  # fmt: skip

        def paths(filters: SearchFilters, scope: Scope | None = None) -> set[str]:
            hits = store.search(query(axis(0)), scope or Scope.operator(), 10, filters)
            return {h.chunk.path for h in hits}

        finance = {"/share/finance/2025/budget.pdf", "/share/finance/2024/budget.docx"}
        assert paths(SearchFilters(folder="/share/finance")) == finance
        assert paths(SearchFilters(folder="/share/finance/")) == finance
        assert paths(SearchFilters(file_type="PDF", folder="/share/finance")) == {
            "/share/finance/2025/budget.pdf"
        }
        assert paths(SearchFilters(language="fr")) == {"/share/rh/conges.pdf"}
        assert paths(SearchFilters(modified_after=1_640_000_000, modified_before=1_710_000_000)) \
            == finance  # fmt: skip
        assert paths(SearchFilters(folder="/share/finance"), Scope.of({"user:x"})) == set()

    def test_keywords_find_an_exact_term_the_vectors_miss(self, store: VectorStore) -> None:
        texts = [
            "Pump housing for the cooling circuit, order code ZX-4471-B.",
            "Valve assembly for the heating circuit, order code QP-1180-A.",
            "Filter cartridge for the water circuit, order code MN-2209-C.",
        ]
        chunks = [
            c.model_copy(update={"text": text, "language": "en"})
            for c, text in zip(make_chunks("/share/parts.pdf", 3, {EVERYONE}), texts, strict=True)
        ]
        store.upsert(chunks, [axis(0), axis(1), axis(2)])
        # The query vector points at the first chunk; the code names the third.
        hits = store.search(query(axis(0), "MN-2209-C"), Scope.operator(), 3)
        assert hits[0].chunk.text == texts[2] or hits[1].chunk.text == texts[2]
        dense_only = store.search(query(axis(0)), Scope.operator(), 1)
        assert dense_only[0].chunk.text == texts[0]

    def test_an_exact_code_beats_near_duplicates_sharing_its_parts(
        self, store: VectorStore
    ) -> None:
        # Twenty entries alike; the keyword analyser splits "AMEND-4711" into "amend" and
        # "4711", which the decoy holds too; only the holder has the whole code.
        texts = [f"Entry {n}: record amended, new reference REF-{5000 + n}." for n in range(20)]
        texts[7] = "Entry 7: record reviewed, new reference AMEND-4711."
        texts[13] = "Entry 13: record amended, new reference REF-4711."
        chunks = [
            c.model_copy(update={"text": text, "language": "en"})
            for c, text in zip(make_chunks("/share/log.md", 20, {EVERYONE}), texts, strict=True)
        ]
        # The query vector sits nearest the decoy and its neighbours.
        vectors = [[1.0, 0.02 * n, 0.0, 0.0] for n in range(20)]
        vectors[13] = [1.0, 0.0, 0.0, 0.0]
        vectors[7] = [0.8, 0.6, 0.0, 0.0]
        store.upsert(chunks, vectors)
        asked = query([1.0, 0.0, 0.0, 0.0], "record amended new reference AMEND-4711")
        hits = store.search(asked, Scope.operator(), 5)
        assert hits[0].chunk.text == texts[7]
        # Without the code the nearest passage wins, as before.
        hits = store.search(query([1.0, 0.0, 0.0, 0.0], "record amended"), Scope.operator(), 1)
        assert hits[0].chunk.text == texts[13]

    def test_equal_scores_are_ordered_by_chunk_id(self, store: VectorStore) -> None:
        chunks = [
            c.model_copy(update={"text": "The same words in every passage.", "language": "en"})
            for c in make_chunks("/share/copies.md", 12, {EVERYONE})
        ]
        store.upsert(chunks, [axis(0)] * 12)
        for text in ("", "same words"):
            hits = store.search(query(axis(0), text), Scope.operator(), 12)
            assert [h.chunk.id for h in hits] == sorted(c.id for c in chunks)

    def test_term_frequencies_count_the_chunks_a_scope_may_read(self, store: VectorStore) -> None:
        texts = ["Steam sterilisers", "Steam boilers", "Infusion pumps"]
        chunks = [
            c.model_copy(update={"text": text, "language": "en"})
            for c, text in zip(make_chunks("/share/a.md", 3, {EVERYONE}), texts, strict=True)
        ]
        secret = make_chunks("/share/b.md", 1, {"group:board"})[0].model_copy(
            update={"text": "Steam turbines", "language": "en"}
        )
        store.upsert([*chunks, secret], [axis(0)] * 4)
        steam, pumps, absent = (min(SPARSE.terms(w, "en")) for w in ("steam", "pumps", "kiwi"))
        assert store.term_frequencies([steam, pumps, absent], Scope.operator(), 100) == {
            steam: 3, pumps: 1, absent: 0,
        }  # fmt: skip
        assert store.term_frequencies([steam], Scope.of({EVERYONE}), 100) == {steam: 2}
        assert store.term_frequencies([steam], Scope.operator(), 2) == {steam: 2}  # capped
        assert store.term_frequencies([steam], Scope.of(set()), 100) == {steam: 0}
        one_document = SearchFilters(doc_id=secret.doc_id)
        assert store.term_frequencies([steam, pumps], Scope.operator(), 100, one_document) == {
            steam: 1, pumps: 0,
        }  # fmt: skip

    def test_keywords_are_stemmed_in_the_passage_language(self, store: VectorStore) -> None:
        french = make_chunks("/share/rh/factures.md", 1, {EVERYONE})[0].model_copy(
            update={"text": "Les factures sont payées sous trente jours.", "language": "fr"}
        )
        german = make_chunks("/share/einkauf/rechnung.md", 1, {EVERYONE})[0].model_copy(
            update={"text": "Die Rechnungen werden schnell bezahlt.", "language": "de"}
        )
        filler = [
            c.model_copy(update={"text": f"Unrelated note number {c.ordinal}.", "language": "en"})
            for c in make_chunks("/share/misc.md", 6, {EVERYONE})
        ]
        store.upsert([french, german, *filler], [axis(1), axis(2)] + [axis(0)] * 6)
        # Singular query words meet plural passage words through each language's stemmer
        # (the query vector is near no passage: the keywords decide).
        top = store.search(query(axis(3), "facture"), Scope.operator(), 2)
        assert french.id in [h.chunk.id for h in top]
        top = store.search(query(axis(3), "Rechnung"), Scope.operator(), 2)
        assert german.id in [h.chunk.id for h in top]

    def test_delete_document_removes_all_its_chunks_and_only_those(
        self, store: VectorStore
    ) -> None:
        store.upsert(make_chunks("/share/a.pdf", 3, {EVERYONE}), [axis(0)] * 3)
        store.upsert(make_chunks("/share/b.pdf", 2, {EVERYONE}), [axis(0)] * 2)
        assert store.delete_document(document_id("/share/a.pdf")) == 0
        assert store.count(document_id("/share/a.pdf")) == 0
        assert store.count() == 2

    def test_delete_from_an_ordinal_trims_a_shrunken_document(self, store: VectorStore) -> None:
        store.upsert(make_chunks("/share/a.pdf", 5, {EVERYONE}), [axis(0)] * 5)
        assert store.delete_document(document_id("/share/a.pdf"), from_ordinal=2) == 0
        remaining = store.search(query(axis(0)), Scope.operator(), 10)
        assert sorted(h.chunk.ordinal for h in remaining) == [0, 1]

    def test_replace_document_leaves_only_the_new_version(self, store: VectorStore) -> None:
        doc = document_id("/share/a.pdf")
        store.upsert(make_chunks("/share/b.pdf", 1, {EVERYONE}), [axis(0)])
        store.upsert(make_chunks("/share/a.pdf", 4, {EVERYONE}), [axis(0)] * 4)
        new = [
            c.model_copy(update={"text": f"new {c.ordinal}"})
            for c in make_chunks("/share/a.pdf", 2, {EVERYONE})
        ]
        store.replace_documents([DocumentVersion(doc, new, [axis(1)] * 2)])
        hits = store.search(query(axis(1)), Scope.operator(), 10, SearchFilters(doc_id=doc))
        assert sorted(h.chunk.text for h in hits) == ["new 0", "new 1"]
        assert store.count() == 3
        store.replace_documents([DocumentVersion(doc, [], [])])
        assert store.count(doc) == 0 and store.count() == 1

    def test_replace_documents_writes_a_batch_of_documents(self, store: VectorStore) -> None:
        a, b, c = (document_id(f"/share/{name}.pdf") for name in "abc")
        store.upsert(make_chunks("/share/a.pdf", 3, {EVERYONE}), [axis(0)] * 3)
        store.upsert(make_chunks("/share/c.pdf", 1, {EVERYONE}), [axis(0)])
        store.replace_documents([
            DocumentVersion(a, make_chunks("/share/a.pdf", 1, {EVERYONE}), [axis(1)]),
            DocumentVersion(b, make_chunks("/share/b.pdf", 2, {EVERYONE}), [axis(2)] * 2),
        ])  # fmt: skip
        assert (store.count(a), store.count(b), store.count(c)) == (1, 2, 1)
        assert [v for _, v in store.document_chunks(a)] == [axis(1)]

    def test_document_chunks_come_back_with_their_vectors_in_order(
        self, store: VectorStore
    ) -> None:
        chunks = make_chunks("/share/a.pdf", 3, {EVERYONE})
        store.upsert(list(reversed(chunks)), [axis(2), axis(1), axis(0)])
        store.upsert(make_chunks("/share/b.pdf", 1, {EVERYONE}), [axis(3)])
        found = store.document_chunks(document_id("/share/a.pdf"))
        assert [chunk for chunk, _ in found] == chunks
        assert [vector for _, vector in found] == [axis(0), axis(1), axis(2)]
        assert store.document_chunks(document_id("/share/none.pdf")) == []

    def test_set_acl_changes_who_sees_a_document(self, store: VectorStore) -> None:
        store.upsert(make_chunks("/share/a.pdf", 2, {"user:alice"}), [axis(0)] * 2)
        store.set_acl(document_id("/share/a.pdf"), frozenset({"user:bob"}))
        assert store.search(query(axis(0)), Scope.of({"user:alice"}), 5) == []
        hits = store.search(query(axis(0)), Scope.of({"user:bob"}), 5)
        assert len(hits) == 2
        assert all(h.chunk.acl == frozenset({"user:bob"}) for h in hits)

    def test_compaction_leaves_no_deleted_chunk_in_the_files_and_keeps_the_rest(
        self, store: VectorStore, store_files: Path
    ) -> None:
        secret = make_chunks("/share/secret.pdf", 2, {EVERYONE})
        secret = [c.model_copy(update={"text": f"Quaxolinde {c.ordinal}"}) for c in secret]
        store.upsert(secret, [axis(0), axis(1)])
        kept = [[1.0, 0.0, 0.0, 0.0], [0.8, 0.6, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0]]
        store.upsert(make_chunks("/share/kept.pdf", 3, {"group:staff"}), kept)
        store.delete_document(document_id("/share/secret.pdf"))
        before = store.search(query(axis(1)), Scope.operator(), 10)

        store.compact()

        assert not files_holding(store_files, b"Quaxolinde")
        after = store.search(query(axis(1)), Scope.operator(), 10)
        assert [h.chunk.ordinal for h in after] == [2, 1, 0]
        assert [(h.chunk, round(h.similarity, 6)) for h in after] == [
            (h.chunk, round(h.similarity, 6)) for h in before
        ]
        staff = Scope.of({"group:staff"})
        assert len(store.search(query(axis(2), "passage"), staff, 10)) == 3
        store.upsert(make_chunks("/share/new.pdf", 1, {EVERYONE}), [axis(3)])
        assert store.count() == 4
        store.compact()
        assert store.count() == 4
        assert store.term_frequencies([], Scope.operator(), 5) == {}

    def test_a_backup_restores_the_same_search_results(
        self, store: VectorStore, tmp_path: Path
    ) -> None:
        # Vectors without ties: engines order equal scores by how points were written.
        vectors = [[1.0, 0.1 * i, 0.2 * (i % 2), 0.05 * i * i] for i in range(5)]
        store.upsert(make_chunks("/share/a.pdf", 3, {EVERYONE}), vectors[:3])
        store.upsert(make_chunks("/share/b.pdf", 2, {"group:hr"}), vectors[3:])
        questions = [query(axis(i)) for i in range(DIM)]
        before = [store.search(q, Scope.operator(), 5) for q in questions]
        copy = tmp_path / "backup"
        copy.mkdir()

        described = store.backup(copy)
        store.drop()
        assert store.count() == 0
        store.restore(copy)

        assert described["points"] == 5
        assert store.count() == 5
        assert [store.search(q, Scope.operator(), 5) for q in questions] == before
        hr = Scope.of({"group:hr"})
        assert {h.chunk.path for h in store.search(questions[1], hr, 5)} == {"/share/b.pdf"}
        assert store.term_frequencies([SPARSE.query("passage").indices[0]], hr, 10) == {
            SPARSE.query("passage").indices[0]: 2
        }

    def test_a_backup_of_another_engine_is_refused(
        self, store: VectorStore, tmp_path: Path
    ) -> None:
        foreign = tmp_path / "foreign"
        foreign.mkdir()
        (foreign / "store.json").write_text('{"format": "something else"}')
        with pytest.raises(StoreUnavailable, match="restore it with the store it was taken"):
            store.restore(foreign)

    def test_ensure_collection_is_idempotent(self, store: VectorStore) -> None:
        store.upsert(make_chunks("/share/a.pdf", 1, {EVERYONE}), [axis(0)])
        store.ensure_collection(DIM)
        assert store.count() == 1


class TestEdgeStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[VectorStore]:
        store = EdgeStore(tmp_path / "index", SPARSE)
        store.ensure_collection(DIM)
        yield store
        store.close()

    @pytest.fixture
    def store_files(self, tmp_path: Path) -> Path:
        return tmp_path / "index"

    def test_a_restore_never_copies_through_a_symbolic_link_in_the_backup(
        self, store: VectorStore, tmp_path: Path
    ) -> None:
        store.upsert(make_chunks("/share/a.pdf", 2, {EVERYONE}), [axis(0), axis(1)])
        copy = tmp_path / "backup"
        copy.mkdir()
        store.backup(copy)
        folder = next(p for p in sorted(copy.iterdir()) if p.is_dir())
        elsewhere = tmp_path / "elsewhere"
        shutil.move(folder, elsewhere)
        folder.symlink_to(elsewhere, target_is_directory=True)
        store.upsert(make_chunks("/share/b.pdf", 1, {EVERYONE}), [axis(2)])

        with pytest.raises(StoreUnavailable, match="symbolic link"):
            store.restore(copy)

        assert store.count() == 3  # the index as it was

    def test_a_backup_copy_is_private_whatever_the_modes_of_the_index_files(
        self, store: VectorStore, store_files: Path, tmp_path: Path
    ) -> None:
        store.upsert(make_chunks("/share/a.pdf", 2, {EVERYONE}), [axis(0), axis(1)])
        for path in store_files.rglob("*"):  # as an install made before modes were kept
            path.chmod(0o755 if path.is_dir() else 0o644)
        os.umask(0o077)  # as every entry point sets it (settings.protect_state)
        copy = tmp_path / "backup"
        copy.mkdir()

        store.backup(copy)

        copied = list(copy.rglob("*"))
        assert copied and [p for p in copied if p.stat().st_mode & 0o077] == []

    def test_deleted_chunks_stay_in_the_engine_files_until_compaction(
        self, store: VectorStore, store_files: Path
    ) -> None:
        """Why erasure compacts: deleting alone leaves the text in the write-ahead log."""
        secret = make_chunks("/share/secret.pdf", 1, {EVERYONE})
        store.upsert([secret[0].model_copy(update={"text": "Quaxolinde"})], [axis(0)])
        store.delete_document(document_id("/share/secret.pdf"))
        store.optimize()
        assert files_holding(store_files, b"Quaxolinde")
        store.compact()
        assert not files_holding(store_files, b"Quaxolinde")

    def test_a_swap_interrupted_before_its_files_were_complete_is_abandoned(
        self, tmp_path: Path
    ) -> None:
        store = EdgeStore(tmp_path / "index", SPARSE, linger_seconds=0)
        store.ensure_collection(DIM)
        store.upsert(make_chunks("/share/a.pdf", 2, {EVERYONE}), [axis(0), axis(1)])
        half_built = tmp_path / "index" / f".swap-building-{gone_pid()}"
        half_built.mkdir()
        (half_built / "edge_config.json").write_text("{}")
        assert store.count() == 2
        assert not half_built.exists()

    def test_searches_go_on_while_compaction_builds_the_new_indexes(self, tmp_path: Path) -> None:
        store = EdgeStore(tmp_path / "index", SPARSE, linger_seconds=0)
        store.ensure_collection(DIM)
        store.upsert(make_chunks("/share/a.pdf", 3, {EVERYONE}), [axis(0), axis(1), axis(2)])
        searched: list[int] = []

        def search_from_another_process(target: Path, current: object) -> None:
            other = subprocess.run(
                [sys.executable, "-c", OTHER_PROCESS_COUNTS, str(tmp_path / "index")],
                capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT,
            )  # fmt: skip
            searched.append(int(other.stdout))
            edge_store._build_indexes(target, None)

        store._shard.replace(edge_store._copy_live_points, search_from_another_process)
        assert searched == [3]
        assert store.count() == 3

    def test_a_write_during_compaction_starts_the_build_over(self, tmp_path: Path) -> None:
        store = EdgeStore(tmp_path / "index", SPARSE, linger_seconds=0)
        store.ensure_collection(DIM)
        store.upsert(make_chunks("/share/a.pdf", 1, {EVERYONE}), [axis(0)])
        builds: list[int] = []

        def write_once_meanwhile(target: Path, current: object) -> None:
            builds.append(1)
            if len(builds) == 1:
                store.upsert(make_chunks("/share/b.pdf", 1, {EVERYONE}), [axis(1)])
            edge_store._build_indexes(target, None)

        store._shard.replace(edge_store._copy_live_points, write_once_meanwhile)
        assert len(builds) == 2
        assert store.count() == 2  # the write made meanwhile is not lost

    def test_a_swap_interrupted_after_its_files_were_complete_is_finished(
        self, tmp_path: Path
    ) -> None:
        old = EdgeStore(tmp_path / "index", SPARSE, linger_seconds=0)
        old.ensure_collection(DIM)
        old.upsert(make_chunks("/share/old.pdf", 1, {EVERYONE}), [axis(0)])
        new = EdgeStore(tmp_path / "new", SPARSE, linger_seconds=0)
        new.ensure_collection(DIM)
        new.upsert(make_chunks("/share/new.pdf", 3, {EVERYONE}), [axis(0)] * 3)
        ready = tmp_path / "index" / ".swap-ready"
        ready.mkdir()
        entries = [e for e in (tmp_path / "new").iterdir() if not e.name.startswith(".")]
        for entry in entries:
            entry.rename(ready / entry.name)
        # Crashed halfway through retiring the old files: one moved, the rest still in place.
        retired = tmp_path / "index" / ".swap-retired"
        retired.mkdir()
        (tmp_path / "index" / "wal").rename(retired / "wal")

        assert old.count() == 3
        assert {h.chunk.path for h in old.search(query(axis(0)), Scope.operator(), 5)} == {
            "/share/new.pdf"
        }
        assert (
            sorted(e.name for e in (tmp_path / "index").iterdir() if e.name.startswith(".swap"))
            == []
        )

    def test_writes_are_durable_across_instances(self, tmp_path: Path) -> None:
        first = EdgeStore(tmp_path / "index", SPARSE)
        first.ensure_collection(DIM)
        first.upsert(make_chunks("/share/a.pdf", 2, {EVERYONE}), [axis(0), axis(1)])
        second = EdgeStore(tmp_path / "index", SPARSE)
        assert second.count() == 2

    def test_a_process_holding_the_index_hands_it_over(self, tmp_path: Path) -> None:
        holder = EdgeStore(tmp_path / "index", SPARSE, linger_seconds=60)
        holder.ensure_collection(DIM)
        holder.upsert(make_chunks("/share/a.pdf", 2, {EVERYONE}), [axis(0), axis(1)])
        assert holder.count() == 2  # the shard now stays open in this process
        started = time.monotonic()
        other = subprocess.run(
            [sys.executable, "-c", OTHER_PROCESS_COUNTS, str(tmp_path / "index")],
            capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT,
        )  # fmt: skip
        assert other.returncode == 0, other.stderr
        assert other.stdout.split() == ["2"]
        assert time.monotonic() - started < 30
        assert len(holder.search(query(axis(1)), Scope.operator(), 5)) == 2
        holder.close()

    def test_a_handle_whose_folder_path_is_gone_still_hands_the_index_over(
        self, tmp_path: Path
    ) -> None:
        index = tmp_path / "index"
        index.mkdir()
        link = tmp_path / "link"
        link.symlink_to(index)
        holder = EdgeStore(link, SPARSE, linger_seconds=60)
        holder.ensure_collection(DIM)
        holder.upsert(make_chunks("/share/a.pdf", 2, {EVERYONE}), [axis(0), axis(1)])
        assert holder.count() == 2  # open and lingering, reached through the link
        link.unlink()  # as when the folder that held the link is cleaned up
        other = subprocess.run(
            [sys.executable, "-c", OTHER_PROCESS_COUNTS, str(index)],
            capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT,
        )  # fmt: skip
        assert other.returncode == 0, other.stderr
        assert other.stdout.split() == ["2"]

    def test_searching_before_any_ingest_finds_nothing(self, tmp_path: Path) -> None:
        assert (
            EdgeStore(tmp_path / "none", SPARSE).search(query(axis(0)), Scope.operator(), 5) == []
        )


class TestQdrantServerStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[VectorStore]:
        store = QdrantServerStore(
            QdrantClient(path=str(tmp_path / "qdrant")), "chunks", "local", SPARSE
        )
        store.ensure_collection(DIM)
        yield store
        store.close()

    @pytest.fixture
    def store_files(self, tmp_path: Path) -> Path:
        return tmp_path / "qdrant"


def test_both_engines_rank_the_same_way(tmp_path: Path) -> None:
    """Congruence: the same writes and queries give the same ids in the same order."""
    edge = EdgeStore(tmp_path / "edge", SPARSE)
    server = QdrantServerStore(
        QdrantClient(path=str(tmp_path / "qdrant")), "chunks", "local", SPARSE
    )
    vectors = [[1.0, 0.1 * i, 0.0, 0.05 * (i % 3)] for i in range(12)]
    chunks = make_chunks("/share/a.pdf", 6, {EVERYONE}) + make_chunks(
        "/share/b.pdf", 6, {"group:x"}
    )
    for store in (edge, server):
        store.ensure_collection(DIM)
        store.upsert(chunks, vectors)
    for vector, text, scope in (
        ([1.0, 0.35, 0.0, 0.0], "", Scope.operator()),
        ([1.0, 0.0, 0.0, 0.1], "", Scope.of({"group:x"})),
        ([1.0, 0.0, 0.0, 0.0], "passage 4", Scope.operator()),
        ([0.0, 1.0, 0.0, 0.0], "/share/b.pdf passage", Scope.of({"group:x"})),
    ):
        edge_hits = edge.search(query(vector, text), scope, 5)
        server_hits = server.search(query(vector, text), scope, 5)
        assert [h.chunk.id for h in edge_hits] == [h.chunk.id for h in server_hits]
        for a, b in zip(edge_hits, server_hits, strict=True):
            assert a.similarity == pytest.approx(b.similarity, abs=1e-4)
            assert a.score == pytest.approx(b.score, abs=1e-4)
    server.close()
