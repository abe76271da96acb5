"""`rag eval`: how well the appliance finds and answers the questions of a golden file.

A golden file has one JSON object per line. An answerable question names where its answer is:

    {"id": "en-001", "question": "...", "source": {"path": "finance/travel.pdf", "page": 2},
     "facts": ["45 EUR"], "language": "en"}

(`sources` instead of `source` lists several places, any one of which counts; `page` is
optional; `facts` are strings the answer must contain; `note` is free text, never scored).
An unanswerable one says so:

    {"id": "en-002", "question": "...", "unanswerable": true, "split": "test"}

`split` is "dev" (the questions rules and thresholds may be tuned on) or "test" (held out:
its figures are only read); a line without it is dev, so a file written by hand or by
`rag feedback export` is never mistaken for held-out data. `document_language` is the
language of the document holding the answer; a question whose `language` differs from it is
cross-lingual.

`load_golden` reads and validates the file, `run` puts each question to the retriever (and the
answerer), and `score` turns the per-question outcomes into the figures, which are reported,
never judged: over all questions, and under `splits` for each split, parted into `languages`
(questions asked in the language of their document, or unanswerable, by question language)
and `cross_lingual` (the others; null when there are none).
"""

from __future__ import annotations

import json
import math
import shutil
import time
import unicodedata
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llm.answer import Answer, PreparedQuestion
from llm.client import Message
from retrieval.access import Scope
from retrieval.models import Hit

SEARCH_DEPTH = 10  # hits looked at per question: recall@10 and mrr@10
# Calibration: the share of answerable questions a refusal threshold may turn away.
FALSE_REFUSAL_BUDGET = 0.05
ANSWER_SHOWN = 200  # characters of an answer quoted in a miss
SPLITS = ("dev", "test")
DEFAULT_SPLIT = "dev"
UNKNOWN_LANGUAGE = "unknown"


class GoldenFileError(Exception):
    """A golden file that cannot be used: unreadable, or a line that is not a valid question."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        where = f"{path} line {line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class SourceRef(BaseModel):
    """Where an answer is: a file (a path suffix on whole components, or an absolute path)
    and optionally its 1-based page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    page: int | None = Field(default=None, ge=1)

    @field_validator("path")
    @classmethod
    def _a_file_path(cls, value: str) -> str:
        if not PurePosixPath(value).parts or PurePosixPath(value) == PurePosixPath("/"):
            raise ValueError("a source path names a file")
        return value

    def matches(self, path: str, page: int | None) -> bool:
        return path_matches(self.path, path) and (self.page is None or self.page == page)

    def label(self) -> str:
        return self.path if self.page is None else f"{self.path} p.{self.page}"


class GoldenQuestion(BaseModel):
    """One line of a golden file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | int | None = None
    question: str = Field(min_length=1)
    source: SourceRef | None = None
    sources: tuple[SourceRef, ...] | None = None
    facts: tuple[str, ...] | None = None
    language: str | None = None
    document_language: str | None = None
    split: Literal["dev", "test"] | None = None
    unanswerable: bool = False
    # Free text for whoever completes or reviews the line; never scored.
    note: str | None = None

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is blank")
        return value

    @field_validator("facts")
    @classmethod
    def _facts_not_blank(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and any(not fact.strip() for fact in value):
            raise ValueError("a fact is blank")
        return value

    @model_validator(mode="after")
    def _answerable_or_not(self) -> GoldenQuestion:
        if self.source is not None and self.sources is not None:
            raise ValueError("give either `source` or `sources`, not both")
        if self.sources is not None and not self.sources:
            raise ValueError("`sources` is empty")
        located = self.source is not None or self.sources is not None
        if self.unanswerable and (located or self.facts):
            raise ValueError("an unanswerable question has no `source`, `sources` or `facts`")
        if not self.unanswerable and not located:
            raise ValueError(
                "give `source` or `sources` (fill in where the answer is), "
                'or set `"unanswerable": true`'
            )
        return self

    @property
    def all_sources(self) -> tuple[SourceRef, ...]:
        if self.source is not None:
            return (self.source,)
        return self.sources or ()

    @property
    def answerable(self) -> bool:
        return not self.unanswerable

    @property
    def split_name(self) -> str:
        return self.split or DEFAULT_SPLIT

    @property
    def language_name(self) -> str:
        return self.language or UNKNOWN_LANGUAGE

    @property
    def cross_lingual(self) -> bool:
        """Asked in another language than the answer's document is written in."""
        return (
            self.language is not None
            and self.document_language is not None
            and self.language != self.document_language
        )


@dataclass(frozen=True)
class Golden:
    """A validated question with its id (the line number when the file gives none)."""

    id: str
    line: int
    item: GoldenQuestion

    @property
    def question(self) -> str:
        return self.item.question


def path_matches(expected: str, actual: str) -> bool:
    """An absolute `expected` path must equal `actual`; a relative one must be its suffix on
    whole components (`finance/a.pdf` matches `/srv/finance/a.pdf`, not `/srv/xfinance/a.pdf`)."""
    want, have = PurePosixPath(expected), PurePosixPath(actual)
    if want.is_absolute():
        return want == have
    parts = want.parts
    return 0 < len(parts) <= len(have.parts) and have.parts[-len(parts) :] == parts


def normalise(text: str) -> str:
    """Text compared for facts: compatibility forms folded, case folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def load_golden(path: str | Path) -> list[Golden]:
    name = str(path)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise GoldenFileError(name, None, f"not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise GoldenFileError(name, None, f"cannot read it ({exc.strerror or exc})") from exc
    questions: list[Golden] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            problem = f"not valid JSON ({exc.msg} at column {exc.colno})"
            raise GoldenFileError(name, number, problem) from exc
        if not isinstance(data, dict):
            raise GoldenFileError(name, number, "expected a JSON object")
        try:
            item = GoldenQuestion.model_validate(data)
        except ValidationError as exc:
            raise GoldenFileError(name, number, _describe(exc)) from exc
        qid = str(item.id) if item.id is not None else str(number)
        if qid in seen:
            raise GoldenFileError(name, number, f"id {qid!r} already used on line {seen[qid]}")
        seen[qid] = number
        questions.append(Golden(qid, number, item))
    if not questions:
        raise GoldenFileError(name, None, "no questions in it")
    return questions


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {where!r}")
        elif error["type"] == "missing":
            problems.append(f"missing key {where!r}")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


# -- running -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the appliance did with one golden question: its hits, and its answer when asked."""

    golden: Golden
    hits: Sequence[Hit]
    answer: Answer | None = None


class Searcher(Protocol):
    def search(self, query: str, scope: Scope, k: int) -> list[Hit]: ...


class Completer(Protocol):
    def complete(self, messages: Sequence[Message]) -> str: ...


class Responder(Protocol):
    """The answerer in its three steps, so that the model's replies can be awaited together."""

    @property
    def chat(self) -> Completer: ...

    def prepare(self, question: str, scope: Scope) -> PreparedQuestion: ...

    def finish(self, prepared: PreparedQuestion, text: str) -> Answer: ...


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self) -> None: ...

    def finish(self) -> None: ...


def run(
    questions: Sequence[Golden],
    retriever: Searcher,
    answerer: Responder | None,
    scope: Scope,
    progress: Progress | None = None,
    parallel: int = 1,
) -> list[Outcome]:
    """Each question to the retriever (top 10) and, unless `answerer` is None, to the answerer,
    with up to `parallel` questions awaiting the model at once (the server batches them); the
    outcomes come in the questions' order."""
    if progress:
        progress.start(len(questions))
    try:
        if answerer is None:
            outcomes = []
            for golden in questions:
                outcomes.append(
                    Outcome(golden, retriever.search(golden.question, scope, SEARCH_DEPTH))
                )
                if progress:
                    progress.advance()
            return outcomes
        return _answer_all(questions, retriever, answerer, scope, progress, max(parallel, 1))
    finally:
        if progress:
            progress.finish()


def _answer_all(
    questions: Sequence[Golden],
    retriever: Searcher,
    answerer: Responder,
    scope: Scope,
    progress: Progress | None,
    parallel: int,
) -> list[Outcome]:
    """Each question searched and prepared in turn, its model reply awaited in a pool of
    `parallel`, and finished in the questions' order once the pool is full."""
    outcomes: list[Outcome] = []
    waiting: deque[tuple[Golden, list[Hit], PreparedQuestion, Future[str] | None]] = deque()

    def finish_oldest() -> None:
        golden, hits, prepared, reply = waiting.popleft()
        answer = answerer.finish(prepared, reply.result() if reply else "")
        outcomes.append(Outcome(golden, hits, answer))
        if progress:
            progress.advance()

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for golden in questions:
            hits = retriever.search(golden.question, scope, SEARCH_DEPTH)
            prepared = answerer.prepare(golden.question, scope)
            reply = None
            if prepared.messages is not None:
                reply = pool.submit(answerer.chat.complete, prepared.messages)
            waiting.append((golden, hits, prepared, reply))
            if len(waiting) >= parallel:
                finish_oldest()
        while waiting:
            finish_oldest()
    return outcomes


class EvalProgress:
    """A live progress line on the terminal: questions done, speed, ETA."""

    def __init__(self, stream: TextIO, bar_width: int = 24) -> None:
        self._stream = stream
        self._bar_width = bar_width
        self._total = 0
        self._done = 0
        self._started = 0.0

    def start(self, total: int) -> None:
        self._total = total
        self._started = time.monotonic()
        self._draw()

    def advance(self) -> None:
        self._done += 1
        self._draw()

    def finish(self) -> None:
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self) -> None:
        fraction = self._done / self._total if self._total else 1.0
        filled = int(fraction * self._bar_width)
        bar = "#" * filled + "." * (self._bar_width - filled)
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self._done / elapsed
        eta = (self._total - self._done) / rate if self._done else 0.0
        line = (
            f"[{bar}] {self._done}/{self._total} questions, {rate:.2f} questions/s, "
            f"ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        )
        width = shutil.get_terminal_size((100, 20)).columns
        self._stream.write("\r" + line[: width - 1].ljust(width - 1))
        self._stream.flush()


# -- scoring -----------------------------------------------------------------------------------


def first_rank(golden: Golden, hits: Sequence[Hit]) -> int | None:
    """1-based rank of the first of the top 10 hits that is one of the question's sources."""
    for rank, hit in enumerate(hits[:SEARCH_DEPTH], start=1):
        if any(s.matches(hit.chunk.path, hit.chunk.page) for s in golden.item.all_sources):
            return rank
    return None


def missing_facts(facts: Sequence[str], answer_text: str) -> list[str]:
    said = normalise(answer_text)
    return [fact for fact in facts if normalise(fact) not in said]


def _share(count: float, total: int) -> float | None:
    return round(count / total, 4) if total else None


def _where(path: str, page: int | None) -> str:
    return path if page is None else f"{path} p.{page}"


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= ANSWER_SHOWN else flat[: ANSWER_SHOWN - 1] + "…"


def _miss(golden: Golden, kind: str, detail: str) -> dict[str, Any]:
    return {
        "id": golden.id,
        "question": golden.question,
        "kind": kind,
        "detail": detail,
        "split": golden.item.split_name,
        "language": golden.item.language_name,
    }


def score(outcomes: Sequence[Outcome], seconds: float = 0.0) -> dict[str, Any]:
    """The figures over the outcomes. Answer figures are null when no answers were asked for
    (retrieval only); any figure over an empty set of questions is null. `splits` holds the
    same figures (without misses) for each split present, parted into same-language questions
    by language and the cross-lingual ones."""
    figures, misses = _figures(outcomes)
    return {
        **figures,
        "calibration": calibrate(outcomes),
        "seconds": round(seconds, 2),
        "splits": _by_split(outcomes),
        "misses": misses,
    }


def _by_split(outcomes: Sequence[Outcome]) -> dict[str, dict[str, Any]]:
    present = {o.golden.item.split_name for o in outcomes}
    splits: dict[str, dict[str, Any]] = {}
    for name in (split for split in SPLITS if split in present):
        members = [o for o in outcomes if o.golden.item.split_name == name]
        crossing = [o for o in members if o.golden.item.cross_lingual]
        own = [o for o in members if not o.golden.item.cross_lingual]
        by_language: dict[str, list[Outcome]] = {}
        for outcome in own:
            by_language.setdefault(outcome.golden.item.language_name, []).append(outcome)
        splits[name] = {
            **_figures(members)[0],
            "languages": {
                language: _figures(by_language[language])[0] for language in sorted(by_language)
            },
            "cross_lingual": _figures(crossing)[0] if crossing else None,
        }
    return splits


def _figures(outcomes: Sequence[Outcome]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with_answers = bool(outcomes) and all(o.answer is not None for o in outcomes)
    answerable = [o for o in outcomes if o.golden.item.answerable]
    unanswerable = [o for o in outcomes if not o.golden.item.answerable]
    found_at = {1: 0, 5: 0, 10: 0}
    reciprocal = 0.0
    cited_right = refused_answerable = refused_unanswerable = 0
    with_facts = facts_right = answered = quoted = 0
    misses: list[dict[str, Any]] = []
    for outcome in outcomes:
        golden, answer = outcome.golden, outcome.answer
        if golden.item.unanswerable:
            if answer is None:
                continue
            if answer.refused:
                refused_unanswerable += 1
            else:
                said = f"answered instead of refusing: {_quote(answer.text)!r}"
                misses.append(_miss(golden, "refusal", said))
            continue
        rank = first_rank(golden, outcome.hits)
        if rank is not None:
            reciprocal += 1 / rank
            for depth in found_at:
                found_at[depth] += rank <= depth
        if rank != 1:
            misses.append(_miss(golden, "retrieval", _retrieval_detail(golden, rank, outcome)))
        if answer is None:
            continue
        facts = golden.item.facts or ()
        with_facts += bool(facts)
        if answer.refused:
            refused_answerable += 1
            why = f": {answer.reason}" if answer.reason else ""
            misses.append(_miss(golden, "refusal", f"refused an answerable question{why}"))
            continue
        answered += 1
        quoted += answer.origin == "quote"
        if any(
            s.matches(c.path, c.page) for c in answer.citations for s in golden.item.all_sources
        ):
            cited_right += 1
        else:
            cited = ", ".join(_where(c.path, c.page) for c in answer.citations) or "nothing"
            misses.append(_miss(golden, "citation", f"cited {cited}"))
        if facts:
            missing = missing_facts(facts, answer.text)
            if missing:
                detail = f"missing {', '.join(map(repr, missing))} in {_quote(answer.text)!r}"
                misses.append(_miss(golden, "facts", detail))
            else:
                facts_right += 1
    n_answerable = len(answerable)
    figures = {
        "questions": len(outcomes),
        "answerable": n_answerable,
        "unanswerable": len(unanswerable),
        "recall@1": _share(found_at[1], n_answerable),
        "recall@5": _share(found_at[5], n_answerable),
        "recall@10": _share(found_at[10], n_answerable),
        "mrr@10": _share(reciprocal, n_answerable),
        "cited_right": _share(cited_right, n_answerable) if with_answers else None,
        "refused_unanswerable": (
            _share(refused_unanswerable, len(unanswerable)) if with_answers else None
        ),
        "refused_answerable": _share(refused_answerable, n_answerable) if with_answers else None,
        "facts": _share(facts_right, with_facts) if with_answers else None,
        "quoted": _share(quoted, answered) if with_answers else None,
    }
    return figures, misses


def calibrate(outcomes: Sequence[Outcome]) -> dict[str, float] | None:
    """The highest `min_support` that turns away at most FALSE_REFUSAL_BUDGET of the answerable
    questions before the model is asked, and what it does on this set; None without answers.
    A question's support is how well the best passage sentence supports an answer."""
    if not outcomes or any(o.answer is None for o in outcomes):
        return None
    answerable = [o.answer.support for o in outcomes if o.answer and o.golden.item.answerable]
    unanswerable = [o.answer.support for o in outcomes if o.answer and not o.golden.item.answerable]
    if not answerable:
        return None
    allowed = int(FALSE_REFUSAL_BUDGET * len(answerable))
    threshold = math.floor(sorted(answerable)[allowed] * 100) / 100
    return {
        "min_support": threshold,
        "refused_answerable": round(sum(s < threshold for s in answerable) / len(answerable), 4),
        "refused_unanswerable": (
            round(sum(s < threshold for s in unanswerable) / len(unanswerable), 4)
            if unanswerable else 0.0
        ),
    }  # fmt: skip


def _retrieval_detail(golden: Golden, rank: int | None, outcome: Outcome) -> str:
    wanted = " or ".join(s.label() for s in golden.item.all_sources)
    if rank is not None:
        return f"{wanted} at rank {rank}"
    if not outcome.hits:
        return f"{wanted} not found: no hits"
    top = outcome.hits[0].chunk
    return f"{wanted} not in the top {SEARCH_DEPTH}; top hit {_where(top.path, top.page)}"


# -- human output ------------------------------------------------------------------------------

_FIGURES = (
    ("recall@1", "source is the first hit"),
    ("recall@5", "source in the top 5 hits"),
    ("recall@10", "source in the top 10 hits"),
    ("mrr@10", "mean of 1/rank of the source"),
    ("cited_right", "answered, citing the source"),
    ("refused_unanswerable", "unanswerable questions refused"),
    ("refused_answerable", "answerable questions refused (false refusals)"),
    ("facts", "answers containing every fact"),
    ("quoted", "answers quoting a passage (model's answer unverified)"),
)


def format_report(report: dict[str, Any], misses_shown: int = 20) -> str:
    plural = "" if report["questions"] == 1 else "s"
    lines = [
        f"{report['questions']} question{plural} ({report['answerable']} answerable, "
        f"{report['unanswerable']} unanswerable) in {report['seconds']:.1f}s"
    ]
    for key, meaning in _FIGURES:
        value = report[key]
        shown = "-" if value is None else f"{value:.3f}"
        lines.append(f"  {key:<21} {shown:>6}  {meaning}")
    lines += _split_table(report.get("splits") or {})
    calibration = report["calibration"]
    if calibration:
        lines.append(
            f"calibrated RAG_RETRIEVAL__MIN_SUPPORT={calibration['min_support']:.2f}: refuses "
            f"{calibration['refused_unanswerable']:.0%} of the unanswerable and "
            f"{calibration['refused_answerable']:.0%} of the answerable questions unasked"
        )
    misses = report["misses"]
    if misses:
        lines.append(f"misses ({len(misses)}):")
        for miss in misses[:misses_shown]:
            where = f" [{miss['split']}]" if "split" in miss else ""
            lines.append(f"  {miss['id']}{where} {miss['kind']}: {miss['detail']}")
            lines.append(f"      {_quote(miss['question'])[:100]}")
        if len(misses) > misses_shown:
            lines.append(f"  ... and {len(misses) - misses_shown} more (all of them with --json)")
    return "\n".join(lines)


_COLUMNS = (
    ("recall@1", "R@1"),
    ("recall@5", "R@5"),
    ("recall@10", "R@10"),
    ("mrr@10", "MRR"),
    ("cited_right", "cited"),
    ("refused_unanswerable", "refused"),
)


def _split_table(splits: dict[str, dict[str, Any]]) -> list[str]:
    """One row per split, then its same-language questions by language and its cross-lingual
    ones."""
    if not splits:
        return []
    header = f"  {'split':<6} {'group':<8} {'n':>4} {'unans':>5}" + "".join(
        f" {title:>7}" for _, title in _COLUMNS
    )
    lines = ["by split; en/fr/de: asked in the document's language; cross: in another one:", header]
    for name, figures in splits.items():
        rows = [("all", figures)]
        rows += list(figures["languages"].items())
        if figures["cross_lingual"] is not None:
            rows.append(("cross", figures["cross_lingual"]))
        for group, values in rows:
            cells = "".join(
                f" {'-' if values[key] is None else format(values[key], '.3f'):>7}"
                for key, _ in _COLUMNS
            )
            lines.append(
                f"  {name:<6} {group:<8} {values['questions']:>4} {values['unanswerable']:>5}"
                + cells
            )
    return lines
