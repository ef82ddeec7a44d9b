"""A replica's private copy: load the newest snapshot, then follow the stream.

Three kinds of work, none waiting for another:
- projection (one thread): each chunk of stream messages becomes a Delta, which the event
  loop applies at once to the read model (query/model.py: the user.* reads, answered there
  without DuckDB) and queues for the tables;
- the writer (one thread): writes the queued Deltas to the in-memory DuckDB, coalesced
  (at the latest LINGER_SECONDS after they arrived, or once FLUSH_EVENTS are queued, or at
  once for a read whose `min_seq` is not written yet), each in one transaction with the
  checkpoint;
- readers (a small pool): every other read runs in a transaction on its own cursor, so it
  sees one committed sequence (DuckDB's MVCC) and never waits for a write.
Every answer reflects exactly one applied sequence: the model's, or the checkpoint the
reader's transaction sees. The replica never opens the writer's file and never publishes to
the stream's subjects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import duckdb
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from userstats.query.model import ReadModel
from userstats.query.status import WAITING, Phase, ReplicaStatus
from userstats.shared import apply, schema, snapshots, subjects
from userstats.shared import batch as batches
from userstats.shared.batch import Batch, BatchRunner
from userstats.shared.projection import Projector
from userstats.shared.seqgate import SequenceGate
from userstats.shared.snapshots import SnapshotError, SnapshotPointer
from userstats.shared.stream import Item, StreamReader

log = logging.getLogger(__name__)
T = TypeVar("T")

# Projected events are written at the latest this long after arriving, or once this many are
# pending, or for a min_seq read not yet written (shared/batch.REPLICA). Reads of the read model
# see them at once; a write costs DuckDB about 25-35 ms of CPU whatever its size (six or so
# keyed upserts), so writing every 50 ms took half a core at 1,000 events/s.
LINGER_SECONDS = batches.REPLICA.linger_seconds or 0.5
FLUSH_EVENTS = batches.REPLICA.max_events or 20_000
CHUNK_EVENTS = 2_000  # projected per step: the read model sees each chunk at once
CHUNK_SECONDS = 0.004  # at most one chunk per this long: a trickle of events comes in a few
INLINE_EVENTS = 200  # chunks this small are projected on the event loop, larger ones in a thread
READERS = 2  # threads running reads on committed state


@dataclass(frozen=True)
class Committed:
    """What a read on the tables sees: a cursor in a transaction, at one checkpoint."""

    con: duckdb.DuckDBPyConnection
    seq: int
    event_us: int


class _Tables:
    """A loaded copy and how many reads use it: a replaced copy closes after its last read."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.users = 0
        self.retired = False
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.users += 1

    def leave(self) -> None:
        with self.lock:
            self.users -= 1
            last = self.retired and self.users == 0
        if last:
            self.con.close()

    def retire(self) -> None:
        with self.lock:
            self.retired = True
            last = self.users == 0
        if last:
            self.con.close()


def merge_batches(taken: list[Batch]) -> list[Batch]:
    """Consecutive batches as few as can be written one after another with the same result: a
    Delta is merged into the one before it unless it forgets a user (its purge must run
    after the earlier rows are written and before its own)."""
    out: list[Batch] = []
    for b in taken:
        if not out or b.delta.forget:
            out.append(b)
            continue
        into = out[-1]
        for name, src in b.delta.tables.items():
            dst = into.delta.tables[name]
            for key in src.deletes:
                dst.delete(key)
            for key, values in src.upserts.items():
                dst.put(key, values, new=key in src.fresh)
        into.delta.forgotten_seqs.extend(b.delta.forgotten_seqs)
        out[-1] = Batch(into.delta, b.seq, max(into.event_us, b.event_us), into.events + b.events)
    return out


def open_snapshot(
    path: Path, follow: bool, threads: int
) -> tuple[duckdb.DuckDBPyConnection, Projector | None, int, int]:
    """Copy a snapshot file into a new in-memory database (with keys, so it can be followed)."""
    con = duckdb.connect(":memory:", config={"threads": threads})
    con.execute(f"ATTACH '{path}' AS snap (READ_ONLY)")
    try:
        if follow:
            for stmt in schema.ddl():
                con.execute(stmt)
            for name in schema.ALL_TABLE_NAMES:
                con.execute(f"INSERT INTO main.{name} SELECT * FROM snap.{name}")
        else:  # another projection version: serve its tables as they are
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'snap'"
            ).fetchall():
                con.execute(f"CREATE TABLE main.{name} AS SELECT * FROM snap.{name}")
    finally:
        con.execute("DETACH snap")
    row = con.execute(f"SELECT seq, event_time_us FROM {schema.CHECKPOINT_TABLE}").fetchone()
    assert row is not None
    seq, event_us = int(row[0]), int(row[1])
    projector = Projector(apply.load_state(con), seq, event_us) if follow else None
    return con, projector, seq, event_us


# Projection and the writer's Python parts run in threads beside the event loop that answers
# requests; with the default 5 ms switch interval the loop waits up to 5 ms for the GIL each
# time one of them holds it (p50 11 ms with 1,000 events/s arriving). 0.5 ms bounds that wait.
SWITCH_INTERVAL = 0.0005


class Replica:
    def __init__(self, js: JetStreamContext, stream: str, workdir: str = "", threads: int = 2) -> None:
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self._js = js
        self._stream = stream
        self._threads = threads
        self._tmp = tempfile.TemporaryDirectory(prefix="userstats-replica-") if not workdir else None
        self._dir = Path(workdir) if workdir else Path(self._tmp.name if self._tmp else ".")
        self._dir.mkdir(parents=True, exist_ok=True)  # a configured replica_dir need not exist yet
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="replica-db")  # loads, writes
        self._projecting = ThreadPoolExecutor(1, thread_name_prefix="replica-project")
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="replica-read")
        self.con: duckdb.DuckDBPyConnection | None = None
        self._tables: _Tables | None = None
        self.projector: Projector | None = None
        self._runner: BatchRunner | None = None  # projects into `projector` chunk by chunk
        self.model: ReadModel | None = None  # None when the tables cannot be followed
        self.pointer: SnapshotPointer | None = None
        self.gate = SequenceGate()  # projected: what a read will reflect (min_seq waits on it)
        self.db_seq = 0  # written to the tables; a read on them writes first if it needs more
        self.epoch = 0  # bumped when a snapshot replaces the tables (for the reply cache)
        self._pending: list[Batch] = []  # projected, not yet written
        self._pending_events = 0
        self._pending_since = 0.0
        self._write_task: asyncio.Task[None] | None = None
        self.event_time_us = 0
        self.loaded_at = 0.0
        self.status: ReplicaStatus = WAITING
        self.snapshot_failures = 0
        self._reader: StreamReader | None = None
        self._follow_task: asyncio.Task[None] | None = None

    # What other modules read of the status (each a view of `status`):
    @property
    def loaded(self) -> bool:
        return self.status.loaded

    @property
    def following(self) -> bool:
        return self.status.following

    @property
    def problem(self) -> str | None:
        return self.status.problem

    @property
    def snapshot_error(self) -> str | None:
        """Set while the newest pointer names a snapshot that could not be loaded although an
        older one is being served; cleared by the next good (or matching) pointer."""
        return self.status.snapshot_error

    def _not_following(self) -> None:
        if self.status.phase is Phase.FOLLOWING:
            self.status = replace(self.status, phase=Phase.SERVING)

    @property
    def stream_pending(self) -> int:
        return self._reader.pending + self._reader.buffered() if self._reader else 0

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def applied_seq(self) -> int:
        return self.gate.seq

    async def wait_applied(self, seq: int, timeout: float) -> bool:
        return await self.gate.wait(seq, timeout)

    # --- snapshots ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Watch the snapshot pointer; load the first one and any newer generation."""
        waiting_logged = False
        while not stop.is_set():
            try:
                kv = await self._js.key_value(subjects.POINTER_BUCKET)
                watcher = await kv.watch(subjects.POINTER_KEY)
            except (BucketNotFoundError, NotFoundError):
                if not waiting_logged:
                    log.info(
                        "waiting for ingest to publish the first snapshot (bucket %s)",
                        subjects.POINTER_BUCKET,
                    )
                    waiting_logged = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
                continue
            try:
                await self._watch(watcher, stop)
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()  # type: ignore[no-untyped-call]

    async def _watch(self, watcher: Any, stop: asyncio.Event) -> None:
        waiting_logged = False
        while not stop.is_set():
            try:
                entry = await watcher.updates(timeout=1.0)
            except TimeoutError:
                continue
            except Exception as exc:  # the watch broke (server restart): rewatch
                log.warning("snapshot pointer watch failed (%s); rewatching", exc)
                return
            if entry is None or entry.value is None:
                if not self.loaded and not waiting_logged:
                    log.info("waiting for ingest to publish the first snapshot")
                    waiting_logged = True
                continue
            try:
                pointer = snapshots.POINTER_DECODER.decode(entry.value)
            except Exception as exc:
                log.error("unreadable snapshot pointer ignored: %s", exc)
                continue
            if self._should_load(pointer):
                await self._load_with_retry(pointer, stop)
            elif self.pointer is not None and self._older_of_same_tables(pointer, pointer.seq):
                if pointer.seq < self.pointer.seq:  # older than the snapshot loaded, not just
                    self._ignore_older(pointer, pointer.seq)  # behind the stream we follow
            elif self.snapshot_error is not None:
                log.info("snapshot pointer agrees with the tables served again (%s)", pointer.object)
                self.status = replace(self.status, snapshot_error=None)

    def _should_load(self, p: SnapshotPointer) -> bool:
        cur = self.pointer
        if cur is None or not self.loaded:
            return True
        if p.generation != cur.generation or p.projection_version != cur.projection_version:
            return True  # a rebuild or a new projection: move to it (load() catches it up first)
        # The same tables: only worth it when not following, and never an older one.
        return not self.following and p.seq > self.applied_seq

    def _ignore_older(self, p: SnapshotPointer, seq: int) -> None:
        log.warning(
            "snapshot %s (seq %d) is older than the tables served (seq %d, same generation): ignored",
            p.object,
            seq,
            self.applied_seq,
        )

    def _older_of_same_tables(self, p: SnapshotPointer, seq: int) -> bool:
        cur = self.pointer
        return (
            cur is not None
            and self.loaded
            and p.generation == cur.generation
            and p.projection_version == cur.projection_version
            and seq < self.applied_seq
        )

    async def _load_with_retry(self, pointer: SnapshotPointer, stop: asyncio.Event) -> None:
        try:
            await self.load(pointer)
        except (SnapshotError, duckdb.Error, OSError) as exc:
            self.snapshot_failures += 1
            if self.loaded:
                rejected = (
                    f"snapshot {pointer.object} rejected ({exc}); serving seq {self.applied_seq} "
                    "from the previous one"
                )
                self.status = replace(self.status, snapshot_error=rejected)
                log.error("%s", rejected)
            else:
                unusable = f"snapshot {pointer.object} unusable: {exc}"
                self.status = replace(self.status, problem=unusable)
                log.error("%s; waiting for the next one", unusable)

    async def load(self, pointer: SnapshotPointer) -> None:
        """Load a snapshot and switch to it. Answers never go back in time: an older snapshot
        of the tables being served is ignored, and a rebuilt generation behind them is first
        brought up to their sequence from the stream, in the background."""
        follow = pointer.projection_version == schema.PROJECTION_VERSION
        path = self._dir / f"{pointer.object}.duckdb"
        started = time.perf_counter()
        try:
            await snapshots.download(self._js, pointer, path)
            con, projector, seq, event_us = await self.db(open_snapshot, path, follow, self._threads)
            model = await self.db(ReadModel.load, con) if follow else None
        finally:
            path.unlink(missing_ok=True)
        if self._older_of_same_tables(pointer, seq):
            con.close()
            self._ignore_older(pointer, seq)
            return
        reader: StreamReader | None = None
        try:
            if projector is not None and self.loaded and self.following and seq < self.applied_seq:
                reader = StreamReader(
                    self._js, self._stream, subjects.STREAM_SUBJECTS, seq + 1, max_buffer=20_000
                )
                await reader.start()
                log.info("bringing the new tables from seq %d up to seq %d first", seq, self.applied_seq)
                assert model is not None
                await self._catch_up(projector, con, model, reader, self.applied_seq)
                await self._stop_following()
                await self._catch_up(projector, con, model, reader, self.applied_seq)  # what came meanwhile
                seq, event_us = projector.last_seq, max(event_us, projector.last_event_us)
            else:
                await self._stop_following()
        except BaseException:
            if reader is not None:
                await reader.stop()
            con.close()
            raise
        old = self._tables
        self._swap(con, projector, model, seq, event_us)
        # lower only when a version mismatch leaves a snapshot that cannot be followed
        self.gate.seq, self.pointer, self.loaded_at = seq, pointer, time.time()
        if old is not None:
            await self.db(old.retire)  # closed once the reads still on it are done
        log.info(
            "snapshot %s loaded: seq %d, %.1f MB, %.2f s",
            pointer.object,
            seq,
            pointer.size / 1e6,
            time.perf_counter() - started,
        )
        if follow:
            self.status = ReplicaStatus(Phase.SERVING)
            await self._start_following(reader)
        else:
            mismatch = (
                f"projection version mismatch: snapshot {pointer.projection_version}, "
                f"this replica {schema.PROJECTION_VERSION}; serving the snapshot without following"
            )
            self.status = ReplicaStatus(Phase.PINNED, problem=mismatch)
            log.warning("%s", mismatch)
        await self.gate.advance(seq)

    def _swap(
        self,
        con: duckdb.DuckDBPyConnection,
        projector: Projector | None,
        model: ReadModel | None,
        seq: int,
        event_us: int,
    ) -> None:
        """On the event loop, between two reads: no read sees a half-switched replica."""
        self.epoch += 1
        self.con, self._tables, self.projector, self.model = con, _Tables(con), projector, model
        self._runner = BatchRunner(projector, batches.REPLICA) if projector is not None else None
        self.db_seq, self.event_time_us = seq, event_us
        self._pending, self._pending_events = [], 0
        if self.status.phase is Phase.WAITING:  # loaded from now on: there are tables to read
            self.status = replace(self.status, phase=Phase.SERVING)

    # --- following the stream ----------------------------------------------------------

    async def _catch_up(
        self,
        projector: Projector,
        con: duckdb.DuckDBPyConnection,
        model: ReadModel,
        reader: StreamReader,
        target: int,
    ) -> None:
        """Project the stream into a copy not yet served until it reaches `target`."""

        runner = BatchRunner(projector, batches.REPLICA)

        def apply_items(items: list[Item]) -> None:
            runner.project(items)
            b = runner.take()
            model.apply(b.delta, b.seq, b.event_us)  # not served yet
            BatchRunner.write(con, b)

        while projector.last_seq < target:
            if not await reader.wait(timeout=30):
                raise SnapshotError(f"the stream stopped at seq {projector.last_seq} while catching up")
            await asyncio.to_thread(apply_items, reader.take(FLUSH_EVENTS))

    async def _start_following(self, reader: StreamReader | None = None) -> None:
        if reader is None:
            reader = StreamReader(
                self._js, self._stream, subjects.STREAM_SUBJECTS, self.applied_seq + 1, max_buffer=20_000
            )
            await reader.start()
        self._reader = reader
        self.status = replace(self.status, phase=Phase.FOLLOWING)
        self._follow_task = asyncio.create_task(self._follow(self._reader), name="follow")

    async def _stop_following(self) -> None:
        self._not_following()
        task, self._follow_task = self._follow_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
        write = self._write_task
        if write is not None:  # the tables it writes may be about to be replaced
            with contextlib.suppress(Exception):
                await asyncio.shield(write)

    def _project(self, items: list[Item]) -> Batch:
        """Project a chunk and take it (projection thread, or the loop for a small one)."""
        runner = self._runner
        assert runner is not None
        runner.project(items)
        return runner.take()

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def _stalled(self) -> bool:
        return self.projector is None

    async def _follow(self, reader: StreamReader) -> None:
        loop = asyncio.get_running_loop()
        last_chunk = 0.0
        while self.projector is not None:
            got = await reader.wait(timeout=LINGER_SECONDS if self._pending else 1.0)
            if got and self.projector is not None:
                wait = last_chunk + CHUNK_SECONDS - time.monotonic()
                if wait > 0:  # a trickle: gather a few ms of it into one chunk
                    await asyncio.sleep(wait)
                last_chunk = time.monotonic()
                items = reader.take(CHUNK_EVENTS)
                if len(items) <= INLINE_EVENTS:  # a millisecond or so: cheaper than a thread hop
                    b = self._project(items)
                else:
                    b = await loop.run_in_executor(self._projecting, self._project, items)
                if self._stalled():  # a write failed meanwhile
                    break
                if self.model is not None:
                    self.model.apply(b.delta, b.seq, b.event_us)  # on the loop: reads see one sequence
                if not self._pending:
                    self._pending_since = time.monotonic()
                self._pending.append(b)
                self._pending_events += b.events
                await self.gate.advance(b.seq)
            if self._pending_events >= FLUSH_EVENTS:  # behind: let the writer keep up
                await self._write_now()
            elif self._pending and time.monotonic() - self._pending_since >= LINGER_SECONDS:
                self._start_write()
        self._not_following()

    def _start_write(self) -> None:
        """Hand what is pending to the writer, unless a write is under way (event loop)."""
        if self.projector is None:  # stalled: the tables stay as they are until a snapshot
            self._pending, self._pending_events = [], 0
            return
        if not self._pending or (self._write_task is not None and not self._write_task.done()):
            return
        tables = self._tables
        assert tables is not None
        taken, self._pending, self._pending_events = self._pending, [], 0
        self._write_task = asyncio.create_task(self._write(tables, taken), name="write")

    async def _write_now(self) -> None:
        """Wait for the write under way, then hand over what is pending: projection goes on
        while it is written, with at most two writes' worth of events in memory."""
        task = self._write_task
        if task is not None and not task.done():
            await asyncio.shield(task)
        self._start_write()

    async def _write(self, tables: _Tables, taken: list[Batch]) -> None:
        seq, event_us = taken[-1].seq, max(b.event_us for b in taken)
        try:
            await self.db(self._write_batches, tables.con, taken)
        except duckdb.Error as exc:
            if tables is not self._tables:
                return  # replaced meanwhile
            self.projector = None  # its State is now ahead of the tables: stop following
            self.model = None  # and so is the model: every read goes to the tables
            failed = f"writing seq {self.db_seq + 1}..{seq} failed: {exc}"
            self.status = replace(self.status, phase=Phase.STALLED, problem=failed)
            log.error("%s; serving seq %d until the next snapshot", failed, self.db_seq)
            return
        if tables is self._tables:
            self.db_seq = seq
            self.event_time_us = max(self.event_time_us, event_us)

    @staticmethod
    def _write_batches(con: duckdb.DuckDBPyConnection, taken: list[Batch]) -> None:
        """Write pending batches (database thread), merged: each transaction moves the
        checkpoint to the last sequence it holds, so a read sees one applied sequence."""
        for b in merge_batches(taken):
            BatchRunner.write(con, b)

    async def flush_to(self, seq: int) -> None:
        """Make the tables reflect at least `seq` (already projected): write what is pending."""
        while self.db_seq < seq:
            task = self._write_task
            if task is not None and not task.done():
                await asyncio.shield(task)
                continue
            if not self._pending:
                return
            self._start_write()

    async def read(self, fn: Callable[..., T], *args: Any, need_seq: int = 0) -> T:
        """Run `fn(committed, *args)` on a reader thread, in a transaction that sees one
        committed sequence, after writing what is projected if the read needs a sequence not
        yet written (a request's `min_seq`). Otherwise it reflects what is written, at most
        LINGER_SECONDS behind what arrived, and never waits for a write."""
        if need_seq > self.db_seq:
            await self.flush_to(need_seq)
        tables = self._tables
        if tables is None:
            raise RuntimeError("no tables loaded")
        tables.enter()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._readers, _run_read, tables.con, fn, args
            )
        finally:
            tables.leave()

    async def close(self) -> None:
        await self._stop_following()
        if self._tables is not None:
            await self.db(self._tables.retire)
        self._executor.shutdown(wait=True)
        self._projecting.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        if self._tmp is not None:
            self._tmp.cleanup()


def _run_read(con: duckdb.DuckDBPyConnection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    cur = con.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        row = cur.execute(f"SELECT seq, event_time_us FROM {schema.CHECKPOINT_TABLE}").fetchone()
        assert row is not None
        return fn(Committed(cur, int(row[0]), int(row[1])), *args)
    finally:
        with contextlib.suppress(duckdb.Error):
            cur.execute("ROLLBACK")
        cur.close()
