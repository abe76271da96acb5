"""The embedded vector store: the Qdrant engine in-process (qdrant-edge)."""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import qdrant_edge as qe

from retrieval.access import Scope
from retrieval.errors import StoreUnavailable
from retrieval.fusion import Candidate, fuse
from retrieval.models import Chunk, Hit
from retrieval.sparse import SparseEncoder
from retrieval.store import (
    FLOAT_FIELDS,
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    DocumentVersion,
    SearchFilters,
    SearchQuery,
    candidates,
    chunk_from_payload,
    chunk_payload,
)

DENSE = "dense"
SPARSE = "bm25"
_CONFIG_FILE = "edge_config.json"
_WAITING_PREFIX = ".waiting-"
# Replacing the shard's files (compaction, restore): new files are written into BUILDING
# (suffixed with the builder's process id), which is renamed READY once complete; the old
# files then move into RETIRED, READY is renamed INSTALLING, and its files move into place.
# An interrupted swap is finished (or, before READY, abandoned) by the next process that
# takes the lock.
_BUILDING = ".swap-building"
_GENERATION_FILE = ".generation"  # counts writes: a build outside the lock checks it
_READY = ".swap-ready"
_INSTALLING = ".swap-installing"
_RETIRED = ".swap-retired"
_SWAP_FOLDERS = (_BUILDING, _READY, _INSTALLING, _RETIRED)
_BACKUP_FILE = "store.json"
_BACKUP_FORMAT = "qdrant-edge shard files"
_COPY_BUFFER = 1 << 20


class EdgeStore:
    """A Qdrant Edge shard in a local folder.

    A shard can be open in one process at a time, and the UI, the CLI and ingestion are
    separate processes. So a process opens the shard under an exclusive lock on the folder
    and keeps it open while it keeps working: queries in a row don't pay for reopening. It
    hands the shard over when another process is waiting (each waiter leaves a marker file)
    or after `linger_seconds` without an operation.
    """

    def __init__(self, path: Path, sparse: SparseEncoder, linger_seconds: float = 2.0) -> None:
        self._path = path
        self._sparse = sparse
        self._shard = _SharedShard(path, linger_seconds)

    def close(self) -> None:
        self._shard.release()

    # -- VectorStore ----------------------------------------------------------------------

    def ensure_collection(self, dimension: int) -> None:
        if self._exists():
            with self._open():  # opening checks the format
                return
        with self._shard.use(create=_config(dimension)) as (shard, created):
            if created:
                _create_payload_indexes(shard)

    def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        points = self._points(chunks, vectors)
        if not points:
            return
        with self._write() as shard:
            shard.update(qe.UpdateOperation.upsert_points(points))
            shard.flush()

    def replace_documents(self, versions: Sequence[DocumentVersion]) -> None:
        batches = [(v.doc_id, self._points(v.chunks, v.vectors)) for v in versions]
        # One operation holding the shard: other processes see the old versions or the new.
        with self._write() as shard:
            points = [point for _, document_points in batches for point in document_points]
            if points:
                shard.update(qe.UpdateOperation.upsert_points(points))
            for doc_id, document_points in batches:
                shard.update(
                    qe.UpdateOperation.delete_points_by_filter(_tail(doc_id, len(document_points)))
                )
            shard.flush()

    def delete_document(self, doc_id: str, from_ordinal: int = 0) -> int:
        if not self._exists():
            return 0
        selector = _tail(doc_id, from_ordinal)
        with self._write() as shard:
            shard.update(qe.UpdateOperation.delete_points_by_filter(selector))
            shard.flush()
            return shard.count(qe.CountRequest(exact=True, filter=selector))

    def set_acl(self, doc_id: str, acl: frozenset[str]) -> None:
        with self._write() as shard:
            shard.update(
                qe.UpdateOperation.set_payload_by_filter(
                    _match("doc_id", doc_id), {"acl": sorted(acl)}
                )
            )
            shard.flush()

    def search(
        self, query: SearchQuery, scope: Scope, k: int, filters: SearchFilters | None = None
    ) -> list[Hit]:
        if scope.sees_nothing or k <= 0 or not self._exists():
            return []
        selection = _selection(scope, filters or SearchFilters())
        sparse = self._sparse.query(query.text)
        limit = candidates(k)
        halves = [qe.Query.Nearest(list(query.vector), using=DENSE)]
        if sparse.indices:
            keywords = qe.SparseVector(indices=sparse.indices, values=sparse.values)
            halves.append(qe.Query.Nearest(keywords, using=SPARSE))
        requests = [
            qe.QueryRequest(
                limit=limit, query=half, filter=selection, with_payload=True, with_vector=[DENSE]
            )
            for half in halves
        ]
        with self._open() as shard:
            found = shard.query_batch(qe.QueryBatchRequest(requests))
        by_vector = [self._candidate(p, 0.0) for p in found[0]]
        by_keywords = (
            [self._candidate(p, float(p.score)) for p in found[1]] if sparse.indices else []
        )
        return fuse(query.text, query.vector, [*by_vector, *by_keywords], k)

    @staticmethod
    def _candidate(point: Any, keyword_score: float) -> Candidate:
        return Candidate.from_payload(
            str(point.id), point.payload or {}, _dense(point.vector), keyword_score
        )

    def document_chunks(self, doc_id: str) -> list[tuple[Chunk, list[float]]]:
        if not self._exists():
            return []
        found: list[tuple[Chunk, list[float]]] = []
        offset = None
        with self._open() as shard:
            while True:
                records, offset = shard.scroll(
                    qe.ScrollRequest(
                        offset=offset,
                        limit=256,
                        filter=_match("doc_id", doc_id),
                        with_payload=True,
                        with_vector=[DENSE],
                    )
                )
                for record in records:
                    chunk = chunk_from_payload(str(record.id), record.payload or {})
                    found.append((chunk, _dense(record.vector)))
                if offset is None:
                    break
        return sorted(found, key=lambda pair: pair[0].ordinal)

    def count(self, doc_id: str | None = None) -> int:
        if not self._exists():
            return 0
        selector = _match("doc_id", doc_id) if doc_id else None
        with self._open() as shard:
            return shard.count(qe.CountRequest(exact=True, filter=selector))

    def term_frequencies(
        self, terms: Sequence[int], scope: Scope, cap: int, filters: SearchFilters | None = None
    ) -> dict[int, int]:
        if not terms or scope.sees_nothing or not self._exists():
            return dict.fromkeys(terms, 0)
        selection = _selection(scope, filters or SearchFilters())
        requests = [
            qe.QueryRequest(
                limit=cap,
                query=qe.Query.Nearest(qe.SparseVector(indices=[term], values=[1.0]), using=SPARSE),
                filter=selection,
            )
            for term in terms
        ]
        with self._open() as shard:
            found = shard.query_batch(qe.QueryBatchRequest(requests))
        return {term: len(points) for term, points in zip(terms, found, strict=True)}

    def drop(self) -> None:
        if self._path.exists():
            self._shard.drop()

    def optimize(self) -> None:
        """Builds the vector and keyword indexes of what was written (the engine leaves that
        to its caller in-process); searches of a large index are slow until it runs."""
        if not self._exists():
            return
        with self._open() as shard:
            shard.optimize()

    def compact(self) -> None:
        """Copies the live chunks into new shard files and deletes the old ones: the engine's
        write-ahead log and its old segments keep deleted chunks' text until then."""
        if self._exists():
            self._shard.replace(_copy_live_points, _build_indexes)

    def backup(self, folder: Path) -> dict[str, Any]:
        """The shard's files, copied while no process holds the shard."""
        if not self._exists():
            raise StoreUnavailable(f"no index at {self._path} to back up")
        with self._shard.files():
            for entry in _shard_entries(self._path):
                _copy_entry(entry, folder / entry.name)
        copy = qe.EdgeShard.load(str(folder))
        try:
            points = copy.count(qe.CountRequest(exact=True))
        finally:
            copy.close()
        described = {"engine": "qdrant-edge", "format": _BACKUP_FORMAT, "points": points}
        (folder / _BACKUP_FILE).write_text(json.dumps(described))
        return described

    def restore(self, folder: Path) -> None:
        described = _read_backup_description(folder)
        if described.get("format") != _BACKUP_FORMAT:
            raise StoreUnavailable(
                f"the backup in {folder} holds {described.get('format')!r}, not the embedded "
                "index's files; restore it with the store it was taken from "
                "(RAG_QDRANT__URL set or not)"
            )
        _check_format(folder)

        def copy_backup(target: Path, current: qe.EdgeShard | None) -> None:
            for entry in folder.iterdir():
                if entry.name != _BACKUP_FILE:
                    _copy_entry(entry, target / entry.name)

        self._shard.replace(copy_backup)

    def describe(self) -> dict[str, Any]:
        return {"engine": "qdrant-edge (embedded)", "location": str(self._path.resolve())}

    # -- helpers --------------------------------------------------------------------------

    @contextmanager
    def _open(self) -> Iterator[qe.EdgeShard]:
        with self._shard.use() as (shard, _):
            yield shard

    @contextmanager
    def _write(self) -> Iterator[qe.EdgeShard]:
        with self._shard.use(writing=True) as (shard, _):
            yield shard

    def _exists(self) -> bool:
        # A swap in progress in another process still means an index is there.
        return any((self._path / name).exists() for name in (_CONFIG_FILE, _READY, _INSTALLING))

    def _points(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> list[Any]:
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        points = []
        for chunk, vector in zip(chunks, vectors, strict=True):
            sparse = self._sparse.document(chunk.embedding_text(), chunk.language)
            named: dict[str, Any] = {DENSE: list(vector)}
            if sparse.indices:
                named[SPARSE] = qe.SparseVector(indices=sparse.indices, values=sparse.values)
            points.append(qe.Point(id=chunk.id, vector=named, payload=chunk_payload(chunk)))
        return points


class _SharedShard:
    """The shard, held open by this process while it is busy and nobody else waits."""

    def __init__(self, path: Path, linger_seconds: float) -> None:
        self._path = path
        self._linger = linger_seconds
        self._mutex = threading.RLock()
        self._shard: qe.EdgeShard | None = None
        self._lock_file: IO[str] | None = None
        self._last_used = 0.0
        self._closer: threading.Thread | None = None
        self._marker = f"{_WAITING_PREFIX}{os.getpid()}-{id(self)}"
        atexit.register(self.release)

    @contextmanager
    def use(
        self, create: qe.EdgeConfig | None = None, writing: bool = False
    ) -> Iterator[tuple[qe.EdgeShard, bool]]:
        with self._mutex:
            created = False
            if self._shard is None:
                created = self._acquire(create)
            assert self._shard is not None
            try:
                if writing:
                    _count_write(self._path)
                yield self._shard, created
            finally:
                self._last_used = time.monotonic()
                if self._linger <= 0 or self._others_waiting():
                    self.release()
                else:
                    self._start_closer()

    def release(self) -> None:
        with self._mutex:
            if self._shard is not None:
                self._shard.close()
                self._shard = None
            if self._lock_file is not None:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
                self._lock_file = None

    def drop(self) -> None:
        """Deletes the shard's files, waiting for other processes to hand it over."""
        with self.files():
            for entry in _shard_entries(self._path):
                _remove_entry(entry)
            _count_write(self._path)

    @contextmanager
    def files(self) -> Iterator[Path]:
        """The shard's folder, locked, with the shard closed: its files hold still."""
        with self._mutex:
            if self._shard is not None:
                self._shard.close()
                self._shard = None
            if self._lock_file is None:
                self._lock_file = self._lock()
            try:
                _finish_swap(self._path)
                yield self._path
            finally:
                self.release()

    def replace(self, prepare: Builder, finish: Builder | None = None) -> None:
        """Swaps the shard's files for those `prepare(folder, current_shard)` writes into an
        empty folder; other processes see the old shard or the new one, and a crash at any
        point leaves one of them whole. `finish(folder, None)`, the slow part, runs without
        the lock, so others search meanwhile; the swap happens only if nothing was written
        in between, else the build starts over (the last try keeps the lock throughout)."""
        building = self._path / f"{_BUILDING}-{os.getpid()}"
        for attempt in range(_BUILD_ATTEMPTS):
            locked_throughout = attempt == _BUILD_ATTEMPTS - 1
            with self.files():
                generation = _generation(self._path)
                shutil.rmtree(building, ignore_errors=True)  # a process that had our id
                building.mkdir()
                exists = (self._path / _CONFIG_FILE).exists()
                current = qe.EdgeShard.load(str(self._path)) if exists else None
                try:
                    prepare(building, current)
                finally:
                    if current is not None:
                        current.close()
                if finish is not None and locked_throughout:
                    finish(building, None)
            if finish is not None and not locked_throughout:
                finish(building, None)
            with self.files():
                if _generation(self._path) != generation:
                    shutil.rmtree(building)
                    continue
                _sync(building)
                os.rename(building, self._path / _READY)
                _finish_swap(self._path)
                _count_write(self._path)  # a build going on elsewhere must not swap this out
                return

    def _acquire(self, create: qe.EdgeConfig | None) -> bool:
        lock_file = self._lock()
        try:
            _finish_swap(self._path)
            created = False
            if (self._path / _CONFIG_FILE).exists():
                _check_format(self._path)
                self._shard = qe.EdgeShard.load(str(self._path))
            elif create is not None:
                self._shard = qe.EdgeShard.create(str(self._path), create)
                created = True
            else:
                raise StoreUnavailable(
                    f"no index at {self._path}; run `rag ingest PATH` to create it"
                )
        except StoreUnavailable:
            lock_file.close()
            raise
        except Exception as exc:  # the engine raises plain exceptions with a message
            lock_file.close()
            raise StoreUnavailable(f"cannot open the index at {self._path}: {exc}") from exc
        self._lock_file = lock_file
        return created

    def _lock(self) -> IO[str]:
        """The folder's exclusive lock, announced by a marker file while waiting for it."""
        self._path.mkdir(parents=True, exist_ok=True)
        marker = self._path / self._marker
        marker.touch()
        lock_file = open(self._path / ".lock", "w")  # noqa: SIM115 (held across calls)
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        finally:
            marker.unlink(missing_ok=True)
        return lock_file

    def _others_waiting(self) -> bool:
        """Whether another handle waits for the shard; also when the folder can no longer be
        listed (its path was removed or renamed): the shard is then handed back, never kept."""
        try:
            entries = list(os.scandir(self._path))
        except OSError:
            return True
        for entry in entries:
            if entry.name.startswith(_WAITING_PREFIX) and entry.name != self._marker:
                if _process_alive(entry.name):
                    return True
                Path(entry.path).unlink(missing_ok=True)
        return False

    def _start_closer(self) -> None:
        # Under the mutex, as the closer clears `_closer` under it when it stops: a shard taken
        # just after a closer decided to stop always gets one of its own.
        if self._closer is None:
            self._closer = threading.Thread(target=self._close_when_idle, daemon=True)
            self._closer.start()

    def _close_when_idle(self) -> None:
        try:
            while True:
                time.sleep(min(0.1, self._linger))
                with self._mutex:
                    if self._shard is None or self._done_lingering():
                        self.release()
                        self._closer = None
                        return
        except BaseException:
            with self._mutex:
                self._closer = None
            raise

    def _done_lingering(self) -> bool:
        return time.monotonic() - self._last_used >= self._linger or self._others_waiting()


def _config(dimension: int) -> qe.EdgeConfig:
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )


def _create_payload_indexes(shard: qe.EdgeShard) -> None:
    indexes = [
        *((field, qe.PayloadSchemaType.Keyword) for field in KEYWORD_FIELDS),
        *((field, qe.PayloadSchemaType.Integer) for field in INTEGER_FIELDS),
        *((field, qe.PayloadSchemaType.Float) for field in FLOAT_FIELDS),
    ]
    for field, schema in indexes:
        shard.update(qe.UpdateOperation.create_field_index(field, schema))
    shard.flush()


Builder = Callable[[Path, "qe.EdgeShard | None"], None]
_BUILD_ATTEMPTS = 3


def _copy_live_points(target: Path, current: qe.EdgeShard | None) -> None:
    if current is None:
        return
    config = json.loads((target.parent / _CONFIG_FILE).read_text())
    fresh = qe.EdgeShard.create(str(target), _config(int(config["vectors"][DENSE]["size"])))
    try:
        _create_payload_indexes(fresh)
        offset = None
        while True:
            records, offset = current.scroll(
                qe.ScrollRequest(offset=offset, limit=512, with_payload=True, with_vector=True)
            )
            points = [qe.Point(id=r.id, vector=r.vector or {}, payload=r.payload) for r in records]
            if points:
                fresh.update(qe.UpdateOperation.upsert_points(points))
            if offset is None:
                break
        fresh.flush()
    finally:
        fresh.close()


def _build_indexes(target: Path, current: qe.EdgeShard | None) -> None:
    fresh = qe.EdgeShard.load(str(target))
    try:
        fresh.optimize()
    finally:
        fresh.close()


def _generation(path: Path) -> int:
    try:
        return int((path / _GENERATION_FILE).read_text())
    except (OSError, ValueError):
        return 0


def _count_write(path: Path) -> None:
    (path / _GENERATION_FILE).write_text(str(_generation(path) + 1))


def _shard_entries(path: Path) -> list[Path]:
    """The shard's own files and folders: not the lock, the waiting markers or a swap."""
    return [
        entry
        for entry in path.iterdir()
        if entry.name not in (".lock", _GENERATION_FILE)
        and not entry.name.startswith((_WAITING_PREFIX, _BUILDING))
        and entry.name not in _SWAP_FOLDERS
    ]


def _finish_swap(path: Path) -> None:
    """Completes a swap of the shard's files that a process began and did not finish."""
    if not path.is_dir():
        return
    ready, installing, retired = path / _READY, path / _INSTALLING, path / _RETIRED
    for building in path.glob(f"{_BUILDING}-*"):
        if not _process_alive(building.name[len(_BUILDING) + 1 :]):
            shutil.rmtree(building)  # never completed: the old files are whole
    if ready.exists():
        retired.mkdir(exist_ok=True)
        for entry in _shard_entries(path):
            os.rename(entry, retired / entry.name)
        os.rename(ready, installing)
    if installing.exists():
        for entry in list(installing.iterdir()):
            os.rename(entry, path / entry.name)
        installing.rmdir()
        _sync(path)
    if retired.exists():
        shutil.rmtree(retired)


def _copy_entry(source: Path, target: Path) -> None:
    """Copies a file or folder of a shard (to or from a backup): its content only, created with
    this process's umask rather than the source's mode, and never through a symbolic link."""
    mode = source.lstat().st_mode
    if stat.S_ISDIR(mode):
        target.mkdir()
        for entry in source.iterdir():
            _copy_entry(entry, target / entry.name)
        return
    if stat.S_ISLNK(mode):
        raise StoreUnavailable(f"{source} is a symbolic link; the index holds only files")
    try:
        descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise StoreUnavailable(f"cannot copy {source}: {exc.strerror or exc}") from exc
    with open(descriptor, "rb") as reader:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise StoreUnavailable(f"{source} is not a regular file; the index holds only those")
        with open(target, "xb") as writer:
            shutil.copyfileobj(reader, writer, _COPY_BUFFER)


def _remove_entry(entry: Path) -> None:
    if entry.is_dir():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _sync(folder: Path) -> None:
    """Makes the folder's entries durable before the swap builds on them."""
    for entry in folder.rglob("*"):
        if entry.is_file():
            with open(entry, "rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_backup_description(folder: Path) -> dict[str, Any]:
    try:
        described: dict[str, Any] = json.loads((folder / _BACKUP_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise StoreUnavailable(f"{folder} is not a backup of the index: {exc}") from exc
    return described


def _check_format(path: Path) -> None:
    config = json.loads((path / _CONFIG_FILE).read_text())
    if SPARSE not in (config.get("sparse_vectors") or {}):
        raise StoreUnavailable(
            f"the index at {path} predates keyword search; rebuild it: "
            "`rag ingest --rebuild PATH...`"
        )


def _process_alive(marker: str) -> bool:
    """Whether the process that left a marker (`.waiting-PID-…`, or a bare `PID`) runs."""
    pid = int(marker.removeprefix(_WAITING_PREFIX).split("-")[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _selection(scope: Scope, filters: SearchFilters) -> qe.Filter | None:
    must: list[Any] = [
        qe.FieldCondition(key, match=qe.MatchValue(value))
        for key, value in filters.keywords().items()
    ]
    if filters.modified_after is not None or filters.modified_before is not None:
        must.append(
            qe.FieldCondition(
                "mtime",
                range=qe.RangeFloat(gte=filters.modified_after, lt=filters.modified_before),
            )
        )
    if scope.unrestricted:
        return qe.Filter(must=must) if must else None
    must.append(qe.FieldCondition("acl", match=qe.MatchAny(sorted(scope.principals))))
    refused = qe.FieldCondition("acl", match=qe.MatchAny(sorted(scope.denials)))
    return qe.Filter(must=must, must_not=[refused])


def _dense(vector: Any) -> list[float]:
    named: dict[str, Any] = vector if isinstance(vector, dict) else {}
    return list(named.get(DENSE) or [])  # the engine hands over Python floats


def _tail(doc_id: str, from_ordinal: int) -> qe.Filter:
    """The document's chunks whose ordinal is at least `from_ordinal`."""
    return qe.Filter(
        must=[
            qe.FieldCondition("doc_id", match=qe.MatchValue(doc_id)),
            qe.FieldCondition("ordinal", range=qe.RangeFloat(gte=from_ordinal)),
        ]
    )


def _match(key: str, value: str) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition(key, match=qe.MatchValue(value))])
