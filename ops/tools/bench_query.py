"""Query benchmark: retrieval as the product does it over a large index, against numpy brute
force in the same run, then the local LLM server's answer latency.

Prints one JSON object per line:
  {"bench": "query", "chunks", "p50_ms", "p95_ms", "bruteforce_p50_ms", "ratio", "queries",
   "embed_p50_ms", "names_p50_ms", "expanded_questions", "fusion_p50_ms",
   "fusion_candidates_max", "embedder", "dense_top1_agreement", "empty_results",
   "acl_violations", "visible_share", "embed_seconds", "write_seconds", "index_build_seconds"}
  {"bench": "answer", "ttft_ms_p50", "answer_ms_p50", "tokens_per_second", "prompts",
   "answer_tokens_p50"}

`query`: `p50_ms`/`p95_ms` time `Retriever.search(question, scope, k)` as `build_retriever`
composes it, on the embedded store, end to end: the names the user's documents define looked
up in the ledger to expand the question, the query's embedding, hybrid search (the Qdrant
engine's dense and BM25 keyword halves, fused by score with the exact-token signal of
retrieval/fusion.py) and the access filter of a user who may read about one chunk in seven
(`visible_share`). `bruteforce_p50_ms` is a float32 numpy product of the same query's
embedding with every dense vector plus an argpartition top-k, without filter or keywords;
`ratio` is p50_ms / bruteforce_p50_ms. Parts of p50_ms, each timed alone on the same
questions: `embed_p50_ms` the question's embedding (which the brute force, starting from the
vectors, does not pay); `names_p50_ms` the names lookup (`Catalog.names_in`, its table of
names already read from the ledger); `fusion_p50_ms` the fusion step (`retrieval.fusion.fuse`)
on the candidates the store handed it for each question, of which there were at most
`fusion_candidates_max` (distinct passages from both halves). `expanded_questions` counts the
questions searched with a name added. `embedder` is the model's id (the folder's name and a
fingerprint): the configured embedder, RAG_EMBEDDER__MODEL_DIR or the packaged default.
`dense_top1_agreement` is the share of queries whose nearest visible chunk in the store (its
dense half alone, under the user's filter) is the exact nearest one by brute force: the HNSW
index's recall at 1. `acl_violations` counts hits the user may not read (must be 0).
`index_build_seconds` times `optimize()` (the HNSW and payload indexes), `write_seconds` the
upserts and `embed_seconds` embedding the distinct passages. Targets: p50_ms <= 50 on 2 cores
and ratio <= 10.

The index is generated: passages in English, French and German from word lists, each with a
unique reference code, in documents of ten chunks spread over twenty ACL groups (a tenth of
them readable by everyone). A few thousand distinct passages are embedded with the real
embedder; every chunk takes one of those vectors with a little Gaussian noise, renormalised,
so the geometry is realistic and the build takes minutes, not hours. The ledger holds a row
per document (10,000 at the default size) as ingestion writes it, with its ACL and the names
it defines: its subject's abbreviation and, for one document in three, one of a dozen shared
names (DORA, DSGVO, RGPD, ...). One question in six asks for a reference code, one in twelve
uses a shared name by its abbreviation.

`answer`: the local LLM server started as `rag up --no-ui` starts it, answering grounded
prompts (`llm.prompts.grounded_messages` over the user's hits) one at a time, streamed:
`ttft_ms_p50` to the first streamed token, `answer_ms_p50` to the end, `tokens_per_second`
the decode rate after the first token (streamed chunks, one token each). `--skip-llm` skips it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.catalog import Catalog
from ingest.context import Profile
from ingest.ledger import FileRecord, Ledger
from retrieval import edge_store
from retrieval.access import Scope
from retrieval.embedder import Embedder
from retrieval.fusion import Candidate, fuse
from retrieval.models import Chunk, Hit, chunk_id, document_id
from retrieval.retriever import Retriever
from retrieval.store import SearchQuery, VectorStore
from settings import Settings, enforce_offline, protect_state

enforce_offline()

Matrix = npt.NDArray[np.float32]

LANGUAGES = ("en", "fr", "de")
GROUPS = 20
CHUNKS_PER_DOCUMENT = 10
BATCH = 2000
NOISE = 0.3  # length of the noise added to a base vector: cosine to it about 0.96
WARMUP = 5
USER = Scope.of({"user:bench", "group:g3", "everyone"})

# (English, French, German) for each term.
TOPICS = [
    ("budget", "budget", "Budget"), ("contract", "contrat", "Vertrag"),
    ("invoice", "facture", "Rechnung"), ("supplier", "fournisseur", "Lieferant"),
    ("maintenance", "maintenance", "Wartung"), ("inspection", "inspection", "Prüfung"),
    ("safety plan", "plan de sécurité", "Sicherheitsplan"),
    ("training", "formation", "Schulung"), ("lease", "bail", "Mietvertrag"),
    ("audit", "audit", "Revision"), ("payment", "paiement", "Zahlung"),
    ("deadline", "échéance", "Frist"), ("permit", "permis", "Genehmigung"),
    ("travel policy", "politique de déplacement", "Reiserichtlinie"),
    ("overtime", "heures supplémentaires", "Überstunden"),
    ("renovation", "rénovation", "Renovierung"), ("procurement", "achat", "Beschaffung"),
    ("insurance", "assurance", "Versicherung"),
    ("salary scale", "grille salariale", "Gehaltstabelle"),
    ("reimbursement", "remboursement", "Erstattung"), ("warehouse", "entrepôt", "Lager"),
    ("vehicle fleet", "parc automobile", "Fuhrpark"),
    ("software licence", "licence logicielle", "Softwarelizenz"),
    ("energy bill", "facture d'énergie", "Energierechnung"),
    ("pension fund", "caisse de retraite", "Pensionskasse"),
    ("data protection", "protection des données", "Datenschutz"),
]  # fmt: skip
BODIES = [
    ("finance committee", "comité financier", "Finanzausschuss"),
    ("board", "conseil d'administration", "Vorstand"),
    ("works council", "comité social et économique", "Betriebsrat"),
    ("purchasing department", "service des achats", "Einkaufsabteilung"),
    ("safety office", "service sécurité", "Sicherheitsbüro"),
    ("legal department", "service juridique", "Rechtsabteilung"),
]  # fmt: skip
PLACES = ["Antwerp", "Lyon", "Hamburg", "Rotterdam", "Marseille", "Munich", "Lille", "Bremen",
          "Ghent", "Strasbourg", "Cologne", "Nantes", "Bordeaux", "Leipzig"]  # fmt: skip
PREFIXES = ["INV", "PO", "CTR", "HR", "FIN", "SAF"]
SENTENCES = {
    "en": [
        "The {t} for {p} was approved by the {b} at EUR {n}.",
        "According to the {b}, the {t} in {p} must be reviewed before {d}.",
        "Costs of the {t} rose by {r} percent compared with last year in {p}.",
        "The {b} asked for a revised {t} covering the sites in {p}.",
        "Any change to the {t} needs the written consent of the {b}.",
    ],
    "fr": [
        "Le {t} pour {p} a été approuvé par le {b} pour {n} EUR.",
        "Selon le {b}, le {t} de {p} doit être révisé avant le {d}.",
        "Le coût du {t} a augmenté de {r} pour cent par rapport à l'an dernier à {p}.",
        "Le {b} demande un {t} révisé pour les sites de {p}.",
        "Toute modification du {t} exige l'accord écrit du {b}.",
    ],
    "de": [
        "Der {t} für {p} wurde vom {b} mit {n} EUR genehmigt.",
        "Laut {b} muss der {t} in {p} vor dem {d} geprüft werden.",
        "Die Kosten für {t} stiegen in {p} um {r} Prozent gegenüber dem Vorjahr.",
        "Der {b} verlangt einen überarbeiteten {t} für die Standorte in {p}.",
        "Jede Änderung am {t} bedarf der schriftlichen Zustimmung des {b}.",
    ],
}
REFERENCES = {
    "en": "Reference {c}: EUR {n}, recorded on {d}.",
    "fr": "Référence {c} : {n} EUR, enregistré le {d}.",
    "de": "Aktenzeichen {c}: {n} EUR, erfasst am {d}.",
}
QUESTIONS = {
    "en": [
        "What is the approved {t} for {p}?",
        "Who approved the {t} in {p}?",
        "When must the {t} for {p} be reviewed?",
        "How much did the {t} cost in {p}?",
    ],
    "fr": [
        "Quel est le {t} approuvé pour {p} ?",
        "Qui a approuvé le {t} de {p} ?",
        "Quand le {t} de {p} doit-il être révisé ?",
    ],
    "de": [
        "Wie hoch ist der genehmigte {t} für {p}?",
        "Wer hat den {t} in {p} genehmigt?",
        "Bis wann muss der {t} in {p} geprüft werden?",
    ],
}
CODE_QUESTIONS = ["What does {c} refer to?", "{c} amount", "Montant de la référence {c} ?"]
# Names many documents define, each (short, long): a document in three defines one of them.
SHARED_NAMES = [
    ("DORA", "Digital Operational Resilience Act"),
    ("GDPR", "General Data Protection Regulation"),
    ("DSGVO", "Datenschutz-Grundverordnung"),
    ("RGPD", "Règlement général sur la protection des données"),
    ("NIS2", "Network and Information Security Directive"),
    ("CSRD", "Corporate Sustainability Reporting Directive"),
    ("SLA", "Service Level Agreement"),
    ("TCO", "Total Cost of Ownership"),
    ("BImSchG", "Bundes-Immissionsschutzgesetz"),
    ("CNIL", "Commission nationale de l'informatique et des libertés"),
    ("HSE", "Health, Safety and Environment"),
    ("KPI", "Key Performance Indicator"),
]
NAME_QUESTIONS = {
    "en": "What does {s} require for the {t}?",
    "fr": "Que prévoit {s} pour le {t} ?",
    "de": "Was verlangt {s} für den {t}?",
}


@dataclass
class Corpus:
    """The generated index contents: chunks in row order, and per row what the checks need."""

    chunks: list[Chunk]
    base_of: npt.NDArray[np.int64]  # row -> index of the distinct passage it varies
    visible: npt.NDArray[np.bool_]  # row -> whether USER may read it
    codes: list[str]  # a sample of the reference codes, for exact-code questions


# -- the corpus ---------------------------------------------------------------------------


def _fill(template: str, rng: random.Random, language: str) -> str:
    column = LANGUAGES.index(language)
    return template.format(
        t=rng.choice(TOPICS)[column],
        b=rng.choice(BODIES)[column],
        p=rng.choice(PLACES),
        n=f"{rng.randint(1_000, 2_000_000):,}",
        r=rng.randint(2, 40),
        d=f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2016, 2026)}",
    )


def base_passages(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """`count` distinct (language, passage) pairs of five sentences, the languages in turn."""
    passages = []
    for number in range(count):
        language = LANGUAGES[number % len(LANGUAGES)]
        sentences = rng.sample(SENTENCES[language], 4) + [rng.choice(SENTENCES[language])]
        passages.append((language, " ".join(_fill(s, rng, language) for s in sentences)))
    return passages


def document_acl(document: int) -> frozenset[str]:
    """An owner, one of twenty groups, and `everyone` for a tenth of the documents."""
    acl = {f"user:owner{document % 50}", f"group:g{document % GROUPS}"}
    if (document // GROUPS) % 10 == 0:
        acl.add("everyone")
    return frozenset(acl)


def reference_code(row: int) -> str:
    """The exact code only row `row` mentions: `INV-2016-000042`."""
    return f"{PREFIXES[row % len(PREFIXES)]}-{2016 + row % 10}-{row:06d}"


def make_chunk(row: int, language: str, passage: str, rng: random.Random) -> Chunk:
    """Row `row` of the index: the passage with a reference sentence and code of its own."""
    document, ordinal = divmod(row, CHUNKS_PER_DOCUMENT)
    reference = REFERENCES[language].replace("{c}", reference_code(row))
    text = f"{passage} {_fill(reference, rng, language)}"
    topic = TOPICS[document % len(TOPICS)][LANGUAGES.index(language)]
    path = f"/srv/share/dept-{document % 12}/{2016 + document % 10}/doc-{document:06d}.pdf"
    doc = document_id(path)
    return Chunk(id=chunk_id(doc, ordinal), doc_id=doc, ordinal=ordinal, text=text, path=path,
                 page=ordinal // 2 + 1, title=f"{topic} {PLACES[document % len(PLACES)]}",
                 language=language, content_sha256=hashlib.sha256(text.encode()).hexdigest(),
                 acl=document_acl(document), mtime=1.45e9 + (row * 7919) % 3.0e8)  # fmt: skip


def make_corpus(bases: Sequence[tuple[str, str]], count: int, rng: random.Random) -> Corpus:
    """`count` chunks in documents of CHUNKS_PER_DOCUMENT, each document in one language and
    its chunks variations of that language's base passages, taken in turn."""
    by_language = {
        language: [n for n, (code, _) in enumerate(bases) if code == language]
        for language in LANGUAGES
    }
    chunks, base_of, visible, codes = [], [], [], []
    for row in range(count):
        document, ordinal = divmod(row, CHUNKS_PER_DOCUMENT)
        language = LANGUAGES[document % len(LANGUAGES)]
        pool = by_language[language]
        base = pool[(document // len(LANGUAGES) * CHUNKS_PER_DOCUMENT + ordinal) % len(pool)]
        chunk = make_chunk(row, language, bases[base][1], rng)
        chunks.append(chunk)
        base_of.append(base)
        visible.append(USER.may_read(chunk.acl))
        if row % 97 == 0:
            codes.append(reference_code(row))
    return Corpus(chunks, np.array(base_of), np.array(visible), codes)


def questions(count: int, codes: Sequence[str], rng: random.Random) -> list[str]:
    """Short questions in the three languages; one in six asks for an exact reference code,
    one in twelve uses a name of SHARED_NAMES by its abbreviation."""
    asked = []
    for number in range(count):
        language = LANGUAGES[number % len(LANGUAGES)]
        if number % 6 == 5 and codes:
            asked.append(rng.choice(CODE_QUESTIONS).format(c=rng.choice(codes)))
        elif number % 12 == 2:
            short = rng.choice(SHARED_NAMES)[0]
            topic = rng.choice(TOPICS)[LANGUAGES.index(language)]
            asked.append(NAME_QUESTIONS[language].format(s=short, t=topic))
        else:
            asked.append(_fill(rng.choice(QUESTIONS[language]), rng, language))
    return asked


def document_names(document: int) -> tuple[tuple[str, str], ...]:
    """The names a document defines: its subject's abbreviation (`SPA2019`, "safety plan
    Antwerp 2019", shared with the few documents of the same subject, place and year) and,
    for one document in three, a name of SHARED_NAMES."""
    topic = TOPICS[document % len(TOPICS)][0]
    subject = f"{topic} {PLACES[document % len(PLACES)]}"
    year = 2016 + document % 10
    initials = "".join(word[0] for word in subject.split()).upper()
    own = (f"{initials}{year}", f"{subject} {year}")
    if document % 3:
        return (own,)
    return (SHARED_NAMES[document // 3 % len(SHARED_NAMES)], own)


def write_ledger(ledger_path: Path, corpus: Corpus, model_id: str) -> int:
    """The ledger ingestion would have written for the corpus: one indexed row per document,
    its ACL and the names it defines, and the index's model. Returns the documents."""
    first_chunks = corpus.chunks[::CHUNKS_PER_DOCUMENT]  # document n's is row n * that
    records = [
        FileRecord(
            chunk.path, 100_000, chunk.mtime, hashlib.sha256(chunk.path.encode()).hexdigest(),
            chunk.doc_id, chunk.acl, "indexed", pages=CHUNKS_PER_DOCUMENT // 2,
            chunks=CHUNKS_PER_DOCUMENT, parser="pdf",
            profile=Profile((chunk.title,), document_names(document)).to_json(), context="",
        )
        for document, chunk in enumerate(first_chunks)
    ]  # fmt: skip
    ledger = Ledger(ledger_path)
    try:
        ledger.put_many(records)
        ledger.record_index_model(model_id)
    finally:
        ledger.close()
    return len(records)


def perturbed(base_vectors: Matrix, base_of: npt.NDArray[np.int64], seed: int) -> Matrix:
    """One unit vector per row: its base vector plus Gaussian noise of length about NOISE."""
    noise_rng = np.random.default_rng(seed)
    dimension = base_vectors.shape[1]
    noise = noise_rng.normal(0.0, NOISE / np.sqrt(dimension), (len(base_of), dimension))
    vectors = base_vectors[base_of] + noise.astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


# -- building the index -------------------------------------------------------------------


def embed_bases(embedder: Embedder, bases: Sequence[tuple[str, str]]) -> Matrix:
    return np.asarray(embedder.embed_documents([text for _, text in bases]), dtype=np.float32)


def write_index(store: VectorStore, chunks: Sequence[Chunk], vectors: Matrix) -> float:
    """Upserts in batches of BATCH; the seconds it took."""
    started = time.perf_counter()
    store.ensure_collection(vectors.shape[1])
    for start in range(0, len(chunks), BATCH):
        stop = start + BATCH
        store.upsert(chunks[start:stop], vectors[start:stop].tolist())
    return time.perf_counter() - started


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# -- timing -------------------------------------------------------------------------------


def time_each(action: Callable[[Any], Any], inputs: Sequence[Any]) -> tuple[list[float], list[Any]]:
    """Milliseconds of `action` on each input, after WARMUP untimed calls; and its results."""
    for item in inputs[:WARMUP]:
        action(item)
    times, results = [], []
    for item in inputs:
        started = time.perf_counter()
        results.append(action(item))
        times.append((time.perf_counter() - started) * 1000)
    return times, results


def brute_force_top(matrix: Matrix, query: Matrix, k: int) -> npt.NDArray[np.intp]:
    """The k rows of `matrix` nearest to `query` by cosine (unit vectors), best first."""
    scores = matrix @ query
    top = np.argpartition(scores, -k)[-k:]
    return top[np.argsort(-scores[top])]


def dense_agreement(store: VectorStore, corpus: Corpus, matrix: Matrix, queries: Matrix) -> float:
    """Share of queries whose nearest chunk USER may read is the same in the store (dense half
    alone: a query without keywords) as by exact search over the visible rows."""
    visible_rows = np.flatnonzero(corpus.visible)
    agreed = 0
    for query in queries:
        exact = visible_rows[int(np.argmax(matrix[visible_rows] @ query))]
        hits = store.search(SearchQuery("", query.tolist()), USER, 1)
        agreed += bool(hits) and hits[0].chunk.id == corpus.chunks[exact].id
    return agreed / len(queries)


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@dataclass
class BenchIndex:
    """The built index, what was put in it, and how long each step of the build took."""

    retriever: Retriever
    corpus: Corpus
    matrix: Matrix  # the dense vectors, in row order
    seconds: dict[str, float]
    ledger_path: Path


# What the store hands to fusion for one search: `fuse`'s arguments.
FusionCall = tuple[str, Sequence[float], list[Candidate], int]


@contextmanager
def fusion_recorded() -> Iterator[list[FusionCall]]:
    """The embedded store's calls to `retrieval.fusion.fuse` while in the block, recorded."""
    calls: list[FusionCall] = []

    def recording(
        query_text: str, query_vector: Sequence[float], found: Sequence[Candidate], k: int
    ) -> list[Hit]:
        calls.append((query_text, query_vector, list(found), k))
        return fuse(query_text, query_vector, found, k)

    edge_store.fuse = recording  # type: ignore[attr-defined]
    try:
        yield calls
    finally:
        edge_store.fuse = fuse  # type: ignore[attr-defined]


def build_index(settings: Settings, chunks: int, distinct: int, rng: random.Random) -> BenchIndex:
    """Generate the corpus, embed its distinct passages, write and optimise the index."""
    from appliance.root import build_retriever

    retriever = build_retriever(settings)
    bases = base_passages(max(len(LANGUAGES), min(distinct, chunks)), rng)
    corpus = make_corpus(bases, chunks, rng)
    progress(f"embedding {len(bases)} distinct passages")
    started = time.perf_counter()
    base_vectors = embed_bases(retriever.embedder, bases)
    embed_seconds = time.perf_counter() - started
    matrix = perturbed(base_vectors, corpus.base_of, rng.randrange(2**32))
    progress(f"writing {chunks} chunks")
    write_seconds = write_index(retriever.store, corpus.chunks, matrix)
    progress("building the HNSW and payload indexes")
    build_seconds = timed(retriever.store.optimize)
    documents = write_ledger(settings.ledger_path, corpus, retriever.embedder.model_id)
    progress(f"wrote the ledger of {documents} documents and the names they define")
    seconds = {"embed": embed_seconds, "write": write_seconds, "index_build": build_seconds}
    return BenchIndex(retriever, corpus, matrix, seconds, settings.ledger_path)


def query_line(index: BenchIndex, asked: Sequence[str], k: int) -> dict[str, Any]:
    """Time the product's search and brute force on the same questions: the `query` line."""
    retriever, corpus = index.retriever, index.corpus
    progress(f"timing {len(asked)} questions")
    search_ms, results = time_each(lambda q: retriever.search(q, USER, k), asked)
    embed_ms, embedded = time_each(retriever.embedder.embed_query, asked)
    catalog = Catalog(index.ledger_path)
    names_ms, _ = time_each(lambda q: catalog.names_in(USER, q), asked)
    with fusion_recorded() as handed:
        for question in asked:
            retriever.search(question, USER, k)
    fusion_ms, _ = time_each(lambda call: fuse(*call), handed)
    query_vectors = np.asarray(embedded, dtype=np.float32)
    brute_ms, _ = time_each(lambda v: brute_force_top(index.matrix, v, k), list(query_vectors))
    agreement = dense_agreement(retriever.store, corpus, index.matrix, query_vectors[:50])
    p50, brute_p50 = percentile(search_ms, 50), percentile(brute_ms, 50)
    return {
        "bench": "query", "chunks": retriever.store.count(), "p50_ms": round(p50, 2),
        "p95_ms": round(percentile(search_ms, 95), 2), "bruteforce_p50_ms": round(brute_p50, 3),
        "ratio": round(p50 / brute_p50, 1), "queries": len(asked),
        "embed_p50_ms": round(percentile(embed_ms, 50), 2),
        "names_p50_ms": round(percentile(names_ms, 50), 3),
        "expanded_questions": sum(retriever.expanded(q, USER) != q for q in asked),
        "fusion_p50_ms": round(percentile(fusion_ms, 50), 2),
        "fusion_candidates_max": max(len({c.chunk_id for c in call[2]}) for call in handed),
        "embedder": retriever.embedder.model_id,
        "dense_top1_agreement": round(agreement, 3),
        "empty_results": sum(not hits for hits in results),
        "acl_violations": sum(not USER.may_read(h.chunk.acl) for r in results for h in r),
        "visible_share": round(float(corpus.visible.mean()), 3),
        "embed_seconds": round(index.seconds["embed"], 1),
        "write_seconds": round(index.seconds["write"], 1),
        "index_build_seconds": round(index.seconds["index_build"], 1),
    }  # fmt: skip


def progress(message: str) -> None:
    """A note on stderr (stdout carries only the JSON lines)."""
    print(f"bench_query: {message}", file=sys.stderr, flush=True)


# -- the answer line ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Streamed:
    first_token_ms: float
    total_ms: float
    tokens: int


def stream_once(chunks: Iterator[str]) -> Streamed:
    """Consume one streamed answer, timing its first non-empty chunk and its end."""
    started = time.perf_counter()
    first, tokens = 0.0, 0
    for _ in chunks:
        tokens += 1
        if tokens == 1:
            first = time.perf_counter() - started
    return Streamed(first * 1000, (time.perf_counter() - started) * 1000, tokens)


def bench_answer(settings: Settings, retriever: Retriever, asked: Sequence[str]) -> dict[str, Any]:
    """The `answer` line: grounded prompts over USER's hits, streamed one at a time."""
    from llm.build import build_chat_model
    from llm.prompts import grounded_messages

    model = build_chat_model(settings)
    k = settings.retrieval.context_passages
    prompts = [grounded_messages(q, retriever.search(q, USER, k)) for q in asked]
    stream_once(model.stream(prompts[0]))  # warm-up: the first request after a cold start
    runs = [stream_once(model.stream(messages)) for messages in prompts]
    decode_seconds = sum(r.total_ms - r.first_token_ms for r in runs) / 1000
    return {
        "bench": "answer",
        "ttft_ms_p50": round(statistics.median(r.first_token_ms for r in runs), 1),
        "answer_ms_p50": round(statistics.median(r.total_ms for r in runs), 1),
        "tokens_per_second": round(sum(r.tokens - 1 for r in runs) / decode_seconds, 1),
        "prompts": len(runs),
        "answer_tokens_p50": statistics.median(r.tokens for r in runs),
    }


def answer_line(settings: Settings, retriever: Retriever, asked: Sequence[str]) -> dict[str, Any]:
    """Start the local LLM server as `rag up --no-ui` does, time the answers, stop it."""
    from ops.stack import llm_process, start_llm

    try:
        start_llm(settings)
        return bench_answer(settings, retriever, asked)
    finally:
        llm_process(settings).stop()


# -- main ---------------------------------------------------------------------------------


def bench_settings(data_dir: Path, llm_port: int) -> Settings:
    overrides: dict[str, Any] = {"llm": {"port": llm_port}}  # the rest from RAG_* as usual
    settings = Settings(data_dir=data_dir, **overrides)
    if settings.qdrant.url or settings.llm.base_url:
        raise SystemExit("unset RAG_QDRANT__URL and RAG_LLM__BASE_URL: the bench runs embedded")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the index")
    parser.add_argument("--queries", type=int, default=200, help="questions timed")
    parser.add_argument("--distinct", type=int, default=3000, help="passages really embedded")
    parser.add_argument("--prompts", type=int, default=10, help="grounded prompts answered")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated corpus")
    parser.add_argument("--skip-llm", action="store_true", help="no `answer` line")
    args = parser.parse_args(argv)
    protect_state()

    with tempfile.TemporaryDirectory(prefix="rag-bench-query-") as work:
        settings = bench_settings(Path(work), free_port())
        rng = random.Random(args.seed)
        index = build_index(settings, args.chunks, args.distinct, rng)
        try:
            asked = questions(args.queries, index.corpus.codes, rng)
            print(json.dumps(query_line(index, asked, settings.retrieval.top_k)), flush=True)
            if not args.skip_llm:
                progress("starting the LLM server (about two minutes cold)")
                print(json.dumps(answer_line(settings, index.retriever, asked[: args.prompts])))
        finally:
            index.retriever.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
