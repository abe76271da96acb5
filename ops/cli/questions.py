"""`rag search`, `rag ask` and `rag eval`: questions to the documents, one or a file of them."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ops.cli.base import (
    CommandFailed,
    Result,
    UsageError,
    add_command,
    add_filter_option,
    appliance,
    filters,
)
from settings import Settings

_MISSES_SHOWN = 20
EVAL_PARALLEL = 4  # questions awaiting the model at once: the server answers them as a batch


def positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {value!r}")
    return int(value)


def search(args: argparse.Namespace, settings: Settings) -> Result:
    from appliance.replies import search_reply

    layer = appliance(settings)
    hits = layer.search(layer.actor(args.user), args.query, args.k, filters(args))
    return search_reply(hits)


def print_search(result: Result) -> None:
    for rank, hit in enumerate(result["hits"], start=1):
        page = f" p.{hit['page']}" if hit["page"] else ""
        snippet = " ".join(hit["text"].split())[:160]
        print(f"{rank}. {hit['score']:.3f} {hit['path']}{page}\n   {snippet}")
    if not result["hits"]:
        print("no results")


def ask(args: argparse.Namespace, settings: Settings) -> Result:
    layer = appliance(settings)
    return layer.ask(layer.actor(args.user), args.question, filters(args)).answer.as_json()


def print_ask(result: Result) -> None:
    print(result["answer"])
    for number, citation in enumerate(result["citations"], start=1):
        page = f", page {citation['page']}" if citation["page"] else ""
        print(f"  [{number}] {citation['path']}{page}")


def evaluate(args: argparse.Namespace, settings: Settings) -> Result:
    from llm.answer import Answerer
    from llm.errors import LLMUnavailable
    from ops.evaluate import EvalProgress, GoldenFileError, load_golden, run, score
    from ops.health import llm_status

    hint = "start it with `rag up`, or use --retrieval-only"
    try:
        questions = load_golden(args.golden)
    except GoldenFileError as exc:
        raise UsageError(str(exc)) from exc
    if args.split is not None:
        questions = [q for q in questions if q.item.split_name == args.split]
        if not questions:
            raise UsageError(f"{args.golden}: no questions in the {args.split} split")
    layer = appliance(settings)
    scope = layer.actor(args.user).scope
    if not args.retrieval_only and not (status := llm_status(settings))["reachable"]:
        raise CommandFailed(f"LLM server at {status['url']} is unreachable; {hint}")
    answerer: Answerer | None = None if args.retrieval_only else layer.parts.answerer
    progress = EvalProgress(sys.stderr) if not args.json and sys.stderr.isatty() else None
    started = time.monotonic()
    try:
        outcomes = run(questions, layer.parts.retriever, answerer, scope, progress, args.parallel)
    except LLMUnavailable as exc:
        raise CommandFailed(f"{exc}; {hint}") from exc
    return score(outcomes, time.monotonic() - started)


def print_evaluation(result: Result) -> None:
    from ops.evaluate import format_report

    print(format_report(result, _MISSES_SHOWN))


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = add_command(commands, "search", common, "find passages", search, print_search)
    p.add_argument("query")
    p.add_argument("--k", type=int, default=None, help="number of hits")
    p.add_argument("--user", default=None, help="act as this user")
    add_filter_option(p)

    p = add_command(commands, "ask", common, "answer a question from the documents",
                    ask, print_ask)  # fmt: skip
    p.add_argument("question")
    p.add_argument("--user", default=None, help="act as this user")
    add_filter_option(p)

    p = add_command(commands, "eval", common, "measure search and answers (golden file)",
                    evaluate, print_evaluation)  # fmt: skip
    p.add_argument("golden", metavar="GOLDEN.jsonl", help="questions and where their answers are")
    p.add_argument("--retrieval-only", action="store_true",
                   help="measure the search only; the LLM is not called")  # fmt: skip
    p.add_argument("--split", choices=("dev", "test"), default=None,
                   help="only the questions of this split (a line without one is dev)")  # fmt: skip
    p.add_argument(
        "--parallel",
        type=positive,
        default=EVAL_PARALLEL,
        metavar="N",
        help=f"questions sent to the model at once (default {EVAL_PARALLEL})",
    )
    p.add_argument("--user", default=None, help="act as this user")
