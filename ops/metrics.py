"""Operator metrics in the Prometheus text format (`rag metrics`).

Every number is read from what the appliance already keeps, so the UI, the CLI and the
ingestion processes need no metrics server of their own:

- the ledger (read-only): documents by state, chunks, files that failed;
- the newest ingestion run report (`<data>/ingest-reports/`): the last run's time, duration
  and counts; every run writes one, `rag ingest --watch` passes and runs started from the UI
  included;
- the progress files of running ingestions in `<data>/run/` (`rag ingest --watch` keeps one,
  the admin page's run another): the queue depth, files a running pass has found and not yet
  finished. Changes on a share are found by the next pass, not between passes: crawling a
  large share on every scrape would cost more than the answer is worth;
- the audit log: events by action, refused answers, and the latencies of searches and answers
  (the `ms` and `first_token_ms` of `search` and `ask` events). These count the events the log
  holds (its retention window); when retention drops old events, Prometheus sees a counter
  reset, which `rate()` and `increase()` handle.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ingest.ledger import LedgerReader
from settings import Settings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DOCUMENT_STATES = ("indexed", "indexing", "failed", "skipped")
RUN_OUTCOMES = ("indexed", "updated", "unchanged", "deleted", "skipped", "failed")
QUERY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ANSWER_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# A running ingestion whose progress file has not moved for this long beyond the per-file
# timeout is taken as killed: its files are no longer counted as queued.
_PROGRESS_GRACE_SECONDS = 300.0

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    suffix: str  # appended to the family's name: "", "_bucket", "_sum", "_count"
    labels: Labels
    value: float


@dataclass(frozen=True)
class Family:
    name: str
    type: str  # gauge, counter, histogram
    help: str
    samples: tuple[Sample, ...]


def gauge(name: str, help_text: str, value: float, labels: Labels = ()) -> Family:
    return Family(name, "gauge", help_text, (Sample("", labels, value),))


def labelled(name: str, kind: str, help_text: str, label: str, values: dict[str, float]) -> Family:
    samples = tuple(Sample("", ((label, key),), value) for key, value in values.items())
    return Family(name, kind, help_text, samples)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for index, bound in enumerate(self.buckets):
            if seconds <= bound:
                self.counts[index] += 1
        self.total += seconds
        self.count += 1

    def family(self, name: str, help_text: str) -> Family:
        counts = self.counts or [0] * len(self.buckets)
        samples = [
            Sample("_bucket", (("le", _number(bound)),), count)
            for bound, count in zip(self.buckets, counts, strict=True)
        ]
        samples.append(Sample("_bucket", (("le", "+Inf"),), self.count))
        samples += [Sample("_sum", (), self.total), Sample("_count", (), self.count)]
        return Family(name, "histogram", help_text, tuple(samples))


# -- the audit log ---------------------------------------------------------------------------


@dataclass
class AuditTally:
    """What the metrics take from the audit log, added up one event at a time."""

    actions: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    oldest: float | None = None
    query: Histogram = field(default_factory=lambda: Histogram(QUERY_BUCKETS))
    answer: Histogram = field(default_factory=lambda: Histogram(ANSWER_BUCKETS))
    first_token: Histogram = field(default_factory=lambda: Histogram(ANSWER_BUCKETS))

    def add(self, event: dict[str, Any]) -> None:
        action, detail = event.get("action"), event.get("detail")
        if not isinstance(action, str) or not isinstance(detail, dict) or action == "retention":
            return
        self.actions[action] += 1
        if self.oldest is None:
            self.oldest = _timestamp(event.get("ts"))
        if action == "search":
            _observe_ms(self.query, detail.get("ms"))
        elif action == "ask":
            _observe_ms(self.answer, detail.get("ms"))
            _observe_ms(self.first_token, detail.get("first_token_ms"))
            self.refused += detail.get("refused") is True


def _observe_ms(histogram: Histogram, ms: object) -> None:
    if isinstance(ms, int | float) and not isinstance(ms, bool) and math.isfinite(ms) and ms >= 0:
        histogram.observe(ms / 1000)


def _timestamp(ts: object) -> float | None:
    try:
        return datetime.fromisoformat(str(ts)).timestamp()
    except ValueError:
        return None


class AuditReader:
    """Tallies the audit log, reading only what was appended since the last call: a server
    scraped every 15 seconds does not parse a year of events each time. A rewritten log
    (retention) or a shorter one is read again from the start."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._tally = AuditTally()

    def tally(self) -> AuditTally:
        with self._lock:
            try:
                with self._path.open("rb") as log:
                    stat = os.fstat(log.fileno())
                    identity = (stat.st_dev, stat.st_ino)
                    if identity != self._identity or stat.st_size < self._offset:
                        self._identity, self._offset, self._tally = identity, 0, AuditTally()
                    log.seek(self._offset)
                    self._read(log.read())
            except FileNotFoundError:
                self._identity, self._offset, self._tally = None, 0, AuditTally()
            return self._tally

    def _read(self, appended: bytes) -> None:
        complete = appended.rfind(b"\n") + 1  # a line still being written waits for next time
        for line in appended[:complete].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # `rag audit --verify` judges damaged lines; metrics skip them
            if isinstance(event, dict):
                self._tally.add(event)
        self._offset += complete


_readers: dict[Path, AuditReader] = {}
_readers_lock = threading.Lock()


def audit_tally(path: Path) -> AuditTally:
    with _readers_lock:
        reader = _readers.setdefault(path, AuditReader(path))
    return reader.tally()


# -- the ledger, run reports, progress files -------------------------------------------------


def ledger_counts(path: Path) -> dict[str, int]:
    """Files by state, chunks indexed and files erased; zeros before the first ingestion."""
    counts = {state: 0 for state in DOCUMENT_STATES} | {"chunks": 0, "erased": 0}
    return counts | LedgerReader(path).counts()


def last_run_report(folder: Path) -> dict[str, Any] | None:
    """The newest readable ingestion run report."""
    reports = sorted(folder.glob("ingest-*.json"), reverse=True) if folder.is_dir() else []
    for report in reports:
        try:
            content = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(content, dict):
            return content
    return None


def running_ingestions(run_dir: Path, stale_after: float, now: float) -> list[dict[str, Any]]:
    """The progress of each ingestion still running (`*.progress.json` in the run folder)."""
    running = []
    for path in sorted(run_dir.glob("*.progress.json")) if run_dir.is_dir() else []:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(state, dict) or state.get("state") not in ("starting", "running"):
            continue
        if now - _float(state.get("updated")) <= stale_after:
            running.append(state)
    return running


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


# -- the families ----------------------------------------------------------------------------


def collect(settings: Settings, now: float | None = None) -> list[Family]:
    now = time.time() if now is None else now
    return [
        *_ledger_families(settings),
        *_ingest_families(settings, now),
        *_audit_families(settings),
    ]


def _ledger_families(settings: Settings) -> list[Family]:
    counts = ledger_counts(settings.ledger_path)
    states = {state: float(counts[state]) for state in DOCUMENT_STATES}
    return [
        labelled(
            "rag_documents", "gauge", "Source files in the ledger, by state.", "state", states
        ),
        gauge("rag_chunks", "Chunks of the indexed documents.", counts["chunks"]),
        gauge("rag_ingest_failures", "Files whose last ingestion failed.", counts["failed"]),
        gauge("rag_documents_erased", "Files erased on request (tombstones).", counts["erased"]),
    ]


def _ingest_families(settings: Settings, now: float) -> list[Family]:
    stale_after = settings.ingest.file_timeout_seconds + _PROGRESS_GRACE_SECONDS
    running = running_ingestions(settings.run_dir, stale_after, now)
    queued = sum(max(int(_float(r.get("total")) - _float(r.get("done"))), 0) for r in running)
    families = [
        gauge("rag_ingest_queue_depth",
              "Files running ingestions have found and not yet finished.", queued),
        gauge("rag_ingest_running", "Ingestion runs in progress.", len(running)),
    ]  # fmt: skip
    report = last_run_report(settings.ingest_reports_dir)
    if report is None:
        return families
    finished = _timestamp(str(report.get("finished", "")).replace("Z", "+00:00"))
    outcomes = {
        outcome: float(len(value) if isinstance(value, list) else _float(value))
        for outcome in RUN_OUTCOMES
        for value in [report.get(outcome)]
    }
    families += [
        gauge("rag_ingest_last_run_timestamp_seconds",
              "When the last ingestion run finished (Unix time).", finished or 0.0),
        gauge("rag_ingest_last_run_seconds", "How long the last ingestion run took.",
              _float(report.get("seconds"))),
        labelled("rag_ingest_last_run_files", "gauge",
                 "Files of the last ingestion run, by outcome.", "outcome", outcomes),
        gauge("rag_ingest_last_run_chunks", "Chunks the last ingestion run wrote.",
              _float(report.get("chunks"))),
    ]  # fmt: skip
    return families


def _audit_families(settings: Settings) -> list[Family]:
    tally = audit_tally(settings.audit_path)
    actions = {action: float(count) for action, count in sorted(tally.actions.items())}
    families = [
        labelled("rag_audit_events_total", "counter",
                 "Audit events in the log, by action (login, login_failed, search, ask, ...).",
                 "action", actions),
        Family("rag_answers_refused_total", "counter",
               "Questions answered with a refusal (nothing relevant enough to answer from).",
               (Sample("", (), tally.refused),)),
        tally.query.family("rag_query_latency_seconds",
                           "Time to search the documents (`search` events)."),
        tally.answer.family("rag_answer_latency_seconds",
                            "Time to answer a question, retrieval included (`ask` events)."),
        tally.first_token.family("rag_answer_first_token_seconds",
                                 "Time to the first streamed word of an answer in the UI."),
    ]  # fmt: skip
    if tally.oldest is not None:
        families.append(gauge("rag_audit_oldest_event_timestamp_seconds",
                              "The oldest event the counters are taken over (Unix time).",
                              tally.oldest))  # fmt: skip
    return families


# -- output ----------------------------------------------------------------------------------


def render(settings: Settings) -> str:
    """The metrics in the Prometheus text exposition format (version 0.0.4)."""
    return format_families(collect(settings))


def format_families(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        lines += [
            f"{family.name}{sample.suffix}{_labels(sample.labels)} {_number(sample.value)}"
            for sample in family.samples
        ]
    return "\n".join(lines) + "\n"


def as_flat_json(families: Sequence[Family]) -> dict[str, float]:
    """`{sample name with labels: value}`, the same samples as the text."""
    return {
        f"{family.name}{sample.suffix}{_labels(sample.labels)}": sample.value
        for family in families
        for sample in family.samples
    }


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{_escape_label(value)}"' for name, value in labels)
    return "{" + inner + "}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def write_textfile(settings: Settings, path: Path) -> None:
    """Replace `path` atomically, for node_exporter's textfile collector (`*.prom`)."""
    text = render(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- the HTTP endpoint -----------------------------------------------------------------------


def make_server(settings: Settings, host: str, port: int) -> ThreadingHTTPServer:
    """A server answering `GET /metrics` with freshly read metrics; not started."""

    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            if self.path.split("?", 1)[0] != "/metrics":
                self._send(404, "only /metrics is served here\n")
                return
            try:
                body = render(settings)
            except Exception as exc:  # noqa: BLE001 (a scrape fails, the server stays up)
                self._send(500, f"metrics unavailable: {type(exc).__name__}: {exc}\n")
                return
            self._send(200, body)

        def _send(self, status: int, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # scrapes every few seconds would bury the logs

    server = ThreadingHTTPServer((host, port), MetricsHandler)
    server.daemon_threads = True
    return server
