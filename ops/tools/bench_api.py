"""API benchmark: `rag serve` under concurrent clients, against the same searches made
in-process through the application layer, one at a time, in the same run.

Prints one JSON object on a line:
  {"bench": "api", "clients", "seconds", "requests", "searches", "asks", "errors_5xx",
   "errors_other", "search_p50_ms", "search_p95_ms", "ask_p50_ms", "ask_p95_ms",
   "throughput_rps", "baseline_search_p50_ms", "search_ratio"}

The sample share is ingested into a private data folder, a user and an API token are added,
and the local LLM server and `rag serve` are started on free loopback ports (the API's
per-token limit raised so that it does not throttle the load). `clients` threads then call the
API with the token for `seconds`: each picks, by its own seeded RNG, a search (`POST
/v1/search`) or, about one time in four, a question (`POST /v1/chat/completions`, not
streamed), over a fixed list of questions about the sample share. No request starts after
`seconds`; those under way are waited for and counted.

`requests` counts the requests made, `searches` and `asks` each kind. `errors_5xx` counts
answers with a 5xx status; `errors_other` any other failure (another status, a body without
its `hits` or `choices`, a timeout or a refused connection). The latencies (`search_p50_ms`,
`search_p95_ms`, `ask_p50_ms`, `ask_p95_ms`, null when none succeeded) are of successful
requests, as a client times them. `throughput_rps` is the successful requests per second of
the load's wall time (from its start to the last answer). `baseline_search_p50_ms` times the
same questions searched in-process (`appliance.core.Appliance.search`, as the same user, with
the same settings), alone, before the servers start; `search_ratio` is search_p50_ms /
baseline_search_p50_ms: what the HTTP layer and the concurrent load add to a search.

The exit status is 1 when any request got a 5xx answer (the end of the API's log is then
printed on stderr), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np

from settings import OFFLINE_ENVIRONMENT, PROJECT_ROOT, Settings, enforce_offline, protect_state

enforce_offline()

SAMPLE_SHARE = PROJECT_ROOT / "ops" / "sample-share"
USER = "bench"
ASK_SHARE = 0.25
BASELINE_ROUNDS = 5
PROGRESS_EVERY_SECONDS = 10.0
QUESTIONS = (
    "What is the approved budget of the Harbour Renovation Project?",
    "What is the daily meal allowance for travel within Germany?",
    "Up to how much are hotel costs reimbursed per night?",
    "How long must passwords be?",
    "Within how many hours must a security incident be reported?",
    "Who may work from home, and on how many days a week?",
    "What do the procurement guidelines require before a contract is awarded?",
    "What did the board decide at its meeting in March 2026?",
)

Kind = Literal["search", "ask"]


@dataclass(frozen=True)
class Outcome:
    """One request as a client saw it: its kind, its status (0: no answer) and whether its
    body was what that kind returns, and how long it took."""

    kind: Kind
    status: int
    well_formed: bool
    ms: float

    @property
    def succeeded(self) -> bool:
        return self.status == 200 and self.well_formed


# -- setting up ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def progress(message: str) -> None:
    """A note on stderr (stdout carries only the JSON line)."""
    print(f"bench_api: {message}", file=sys.stderr, flush=True)


def bench_settings(data_dir: Path, llm_port: int, api_port: int) -> Settings:
    """The run's settings: its own data folder and ports, an API limit no load reaches; the
    rest from RAG_* as usual."""
    overrides: dict[str, Any] = {
        "llm": {"port": llm_port},
        "api": {"host": "127.0.0.1", "port": api_port, "requests_per_minute": 1_000_000},
    }
    settings = Settings(data_dir=data_dir, **overrides)
    if settings.qdrant.url or settings.llm.base_url:
        raise SystemExit("unset RAG_QDRANT__URL and RAG_LLM__BASE_URL: the bench runs embedded")
    return settings


def server_environment(settings: Settings) -> dict[str, str]:
    """The environment `rag serve` reads the same settings from."""
    return {
        **os.environ,
        **OFFLINE_ENVIRONMENT,
        "RAG_DATA_DIR": str(settings.data_dir.resolve()),
        "RAG_LLM__PORT": str(settings.llm.port),
        "RAG_API__HOST": settings.api.host,
        "RAG_API__PORT": str(settings.api.port),
        "RAG_API__REQUESTS_PER_MINUTE": str(settings.api.requests_per_minute),
    }


def ingest_sample_share(settings: Settings) -> None:
    from ingest.ledger import Ledger
    from ingest.pipeline import Ingestor
    from retrieval.build import build_embedder, build_store

    store, ledger = build_store(settings), Ledger(settings.ledger_path)
    try:
        ingestor = Ingestor(settings, build_embedder(settings), store, ledger)
        report = ingestor.run([str(SAMPLE_SHARE)])
    finally:
        store.close()
        ledger.close()
    if report.failed:
        raise SystemExit(f"the sample share did not ingest: {report.failed}")


def add_user_and_token(settings: Settings) -> str:
    """USER, in no group (so reading what everyone may), and an API token for them: its
    secret."""
    from appliance.actor import Actor
    from appliance.core import Appliance
    from appliance.root import Parts

    appliance = Appliance(Parts(settings))
    try:
        operator = Actor.operator()
        appliance.add_user(operator, USER, secrets.token_urlsafe(16), [])
        _, secret = appliance.create_token(operator, USER, name="bench")
        return secret
    finally:
        appliance.close()


def baseline_search_ms(settings: Settings, rounds: int) -> list[float]:
    """Milliseconds of each search of QUESTIONS, `rounds` times over, made in this process
    through the application layer as USER, one at a time (after one untimed round)."""
    from appliance.core import Appliance
    from appliance.root import Parts

    appliance = Appliance(Parts(settings))
    try:
        actor = appliance.actor(USER)
        if not all(appliance.search(actor, question) for question in QUESTIONS):
            raise SystemExit(f"{USER} finds nothing for some questions: check the sample share")
        times = []
        for _ in range(rounds):
            for question in QUESTIONS:
                started = time.perf_counter()
                appliance.search(actor, question)
                times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        appliance.close()


# -- the load -----------------------------------------------------------------------------


def request_once(client: httpx.Client, kind: Kind, question: str) -> Outcome:
    started = time.perf_counter()
    try:
        if kind == "search":
            response = client.post("v1/search", json={"query": question})
            expected = "hits"
        else:
            body = {"model": "rag", "messages": [{"role": "user", "content": question}]}
            response = client.post("v1/chat/completions", json=body)
            expected = "choices"
        well_formed = response.status_code == 200 and expected in response.json()
        status = response.status_code
    except (httpx.HTTPError, ValueError):
        status, well_formed = 0, False
    return Outcome(kind, status, well_formed, (time.perf_counter() - started) * 1000)


class Load:
    """`clients` threads calling the API until `seconds` have passed; their outcomes."""

    def __init__(self, url: str, token: str, timeout: float, seed: int) -> None:
        self._url, self._token, self._timeout, self._seed = url, token, timeout, seed
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self._url, headers={"Authorization": f"Bearer {self._token}"},
            timeout=self._timeout, trust_env=False,
        )  # fmt: skip

    def run_client(self, number: int, deadline: float) -> None:
        rng = random.Random(f"{self._seed}-{number}")
        with self.client() as client:
            while time.monotonic() < deadline:
                kind: Kind = "ask" if rng.random() < ASK_SHARE else "search"
                outcome = request_once(client, kind, rng.choice(QUESTIONS))
                with self._lock:
                    self.outcomes.append(outcome)

    def run(self, clients: int, seconds: int) -> float:
        """Run the clients; the wall time from their start to the last answer, in seconds."""
        started = time.monotonic()
        deadline = started + seconds
        threads = [
            threading.Thread(target=self.run_client, args=(number, deadline), daemon=True)
            for number in range(clients)
        ]
        for thread in threads:
            thread.start()
        next_note = started + PROGRESS_EVERY_SECONDS
        while alive := [thread for thread in threads if thread.is_alive()]:
            alive[0].join(timeout=1.0)
            now = time.monotonic()
            if now >= next_note:
                with self._lock:
                    done = len(self.outcomes)
                note = " (waiting for the requests under way)" if now > deadline else ""
                progress(f"{done} requests after {now - started:.0f} s{note}")
                next_note += PROGRESS_EVERY_SECONDS
        return time.monotonic() - started

    def warm_up(self) -> None:
        """One search and one question, untimed: the first after a cold start pay for it."""
        with self.client() as client:
            for kind in ("search", "ask"):
                outcome = request_once(client, kind, QUESTIONS[0])
                if not outcome.succeeded:
                    raise SystemExit(f"the API's first {kind} failed (status {outcome.status})")


def percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values), q)), 1) if values else None


def api_line(
    outcomes: Sequence[Outcome], clients: int, seconds: int, wall: float, baseline: list[float]
) -> dict[str, Any]:
    """The `api` line from the load's outcomes and the in-process searches' times."""
    search_ms = [o.ms for o in outcomes if o.kind == "search" and o.succeeded]
    ask_ms = [o.ms for o in outcomes if o.kind == "ask" and o.succeeded]
    errors_5xx = sum(500 <= o.status < 600 for o in outcomes)
    search_p50 = percentile(search_ms, 50)
    baseline_p50 = percentile(baseline, 50)
    return {
        "bench": "api", "clients": clients, "seconds": seconds, "requests": len(outcomes),
        "searches": sum(o.kind == "search" for o in outcomes),
        "asks": sum(o.kind == "ask" for o in outcomes),
        "errors_5xx": errors_5xx,
        "errors_other": sum(not o.succeeded for o in outcomes) - errors_5xx,
        "search_p50_ms": search_p50, "search_p95_ms": percentile(search_ms, 95),
        "ask_p50_ms": percentile(ask_ms, 50), "ask_p95_ms": percentile(ask_ms, 95),
        "throughput_rps": round((len(search_ms) + len(ask_ms)) / wall, 2),
        "baseline_search_p50_ms": baseline_p50,
        "search_ratio": (
            round(search_p50 / baseline_p50, 2) if search_p50 and baseline_p50 else None
        ),
    }  # fmt: skip


# -- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=60, help="how long the load runs")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients")
    parser.add_argument("--seed", type=int, default=7, help="seed of the clients' choices")
    parser.add_argument(
        "--llm-port", type=int, default=None,
        help="use the local LLM server already serving on this port instead of starting one",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients and --seconds must be positive")
    protect_state()

    from ops.processes import ManagedProcess, wait_until_healthy
    from ops.stack import api_url, llm_process, start_llm

    with tempfile.TemporaryDirectory(prefix="rag-bench-api-") as work:
        settings = bench_settings(Path(work), args.llm_port or free_port(), free_port())
        api = ManagedProcess("api", settings.run_dir)
        try:
            progress("ingesting the sample share")
            ingest_sample_share(settings)
            token = add_user_and_token(settings)
            progress(f"timing {BASELINE_ROUNDS * len(QUESTIONS)} searches in-process")
            baseline = baseline_search_ms(settings, BASELINE_ROUNDS)
            if args.llm_port is None:
                progress("starting the LLM server (about two minutes cold)")
                start_llm(settings)
            progress("starting rag serve")
            url = api_url(settings)
            command = [sys.executable, "-m", "ops.cli", "serve"]
            api.start(command, server_environment(settings), PROJECT_ROOT)
            wait_until_healthy(
                f"{url}healthz", settings.api.startup_timeout_seconds,
                lambda: api.pid() is not None, "the API", api.log_tail,
            )  # fmt: skip
            load = Load(url, token, settings.llm.timeout_seconds + 60, args.seed)
            load.warm_up()
            progress(f"{args.clients} clients for {args.seconds:g} s")
            wall = load.run(args.clients, args.seconds)
            line = api_line(load.outcomes, args.clients, args.seconds, wall, baseline)
            print(json.dumps(line), flush=True)
            if line["errors_5xx"]:
                progress(f"5xx answers; the API's log ends: {api.log_tail(20)}")
                return 1
            return 0
        finally:
            api.stop()
            if args.llm_port is None:
                llm_process(settings).stop()


if __name__ == "__main__":
    sys.exit(main())
