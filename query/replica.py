"""A replica's private copy: load the newest snapshot, then follow the stream.

The copy is an in-memory DuckDB owned by one worker thread; applying batches and running
queries are serialized on it, so every answer reflects exactly one applied sequence. The
replica never opens the writer's file and never publishes to the stream's subjects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import duckdb
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from userstats.query.status import WAITING, Phase, ReplicaStatus
from userstats.shared import apply, schema, snapshots, subjects
from userstats.shared.projection import Projector
from userstats.shared.seqgate import SequenceGate
from userstats.shared.snapshots import SnapshotError, SnapshotPointer
from userstats.shared.stream import Item, StreamReader

log = logging.getLogger(__name__)
T = TypeVar("T")

STREAM_SUBJECTS = [subjects.EVENTS_WILDCARD, subjects.JOURNAL_WILDCARD]
LINGER_SECONDS = 0.05  # projected events are written at the latest this long after arriving...
FLUSH_EVENTS = 20_000  # ...or once this many are pending, or before any read


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


class Replica:
    def __init__(self, js: JetStreamContext, stream: str, workdir: str = "", threads: int = 2) -> None:
        self._js = js
        self._stream = stream
        self._threads = threads
        self._tmp = tempfile.TemporaryDirectory(prefix="userstats-replica-") if not workdir else None
        self._dir = Path(workdir) if workdir else Path(self._tmp.name if self._tmp else ".")
        self._dir.mkdir(parents=True, exist_ok=True)  # a configured replica_dir need not exist yet
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="replica-db")
        self.con: duckdb.DuckDBPyConnection | None = None
        self.projector: Projector | None = None
        self.pointer: SnapshotPointer | None = None
        self.gate = SequenceGate()  # projected: what a read will reflect (min_seq waits on it)
        self.db_seq = 0  # written to the tables (database thread); reads flush up to applied_seq
        # For the reply cache: bumped when a snapshot replaces the tables, and per lower-cased
        # username the last db_seq whose write changed that user's rows (database thread).
        self.epoch = 0
        self.user_changed: dict[str, int] = {}
        self._pending_since = 0.0
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
        finally:
            path.unlink(missing_ok=True)
        if self._older_of_same_tables(pointer, seq):
            con.close()
            self._ignore_older(pointer, seq)
            return
        reader: StreamReader | None = None
        try:
            if projector is not None and self.loaded and self.following and seq < self.applied_seq:
                reader = StreamReader(self._js, self._stream, STREAM_SUBJECTS, seq + 1, max_buffer=20_000)
                await reader.start()
                log.info("bringing the new tables from seq %d up to seq %d first", seq, self.applied_seq)
                await self._catch_up(projector, con, reader, self.applied_seq)
                await self._stop_following()
                await self._catch_up(projector, con, reader, self.applied_seq)  # what came meanwhile
                seq, event_us = projector.last_seq, max(event_us, projector.last_event_us)
            else:
                await self._stop_following()
        except BaseException:
            if reader is not None:
                await reader.stop()
            con.close()
            raise
        old = self.con
        await self.db(self._swap, con, projector, seq, event_us)
        # lower only when a version mismatch leaves a snapshot that cannot be followed
        self.gate.seq, self.pointer, self.loaded_at = seq, pointer, time.time()
        if old is not None:
            await self.db(old.close)
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
        self, con: duckdb.DuckDBPyConnection, projector: Projector | None, seq: int, event_us: int
    ) -> None:
        """On the database thread, so no query sees a half-switched replica."""
        self.epoch += 1
        self.user_changed.clear()
        self.con, self.projector, self.db_seq, self.event_time_us = con, projector, seq, event_us
        if self.status.phase is Phase.WAITING:  # loaded from now on: there are tables to read
            self.status = replace(self.status, phase=Phase.SERVING)

    # --- following the stream ----------------------------------------------------------

    async def _catch_up(
        self, projector: Projector, con: duckdb.DuckDBPyConnection, reader: StreamReader, target: int
    ) -> None:
        """Project the stream into a copy not yet served until it reaches `target`."""

        def apply_items(items: list[Item]) -> None:
            for item in items:
                projector.project(item.seq, item.subject, item.data, item.stream_us)
            apply.apply_batch(con, projector.take_delta(), projector.last_seq, projector.last_event_us)

        while projector.last_seq < target:
            if not await reader.wait(timeout=30):
                raise SnapshotError(f"the stream stopped at seq {projector.last_seq} while catching up")
            await asyncio.to_thread(apply_items, reader.take(FLUSH_EVENTS))

    async def _start_following(self, reader: StreamReader | None = None) -> None:
        if reader is None:
            reader = StreamReader(
                self._js, self._stream, STREAM_SUBJECTS, self.applied_seq + 1, max_buffer=20_000
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

    def _project(self, items: list[Item]) -> int:
        """Project a batch into memory (database thread); write it only when due."""
        proj = self.projector
        assert proj is not None
        if proj.last_seq == self.db_seq:
            self._pending_since = time.monotonic()
        for item in items:
            proj.project(item.seq, item.subject, item.data, item.stream_us)
        if proj.last_seq - self.db_seq >= FLUSH_EVENTS:
            self.flush()
        return proj.last_seq

    def flush(self) -> None:
        """Write what was projected but not yet written (database thread).

        Reads call this first, so an answer always reflects every projected event. Writing
        lazily lets a busy stream coalesce into few DuckDB transactions.
        """
        proj, con = self.projector, self.con
        if proj is None or con is None or proj.last_seq == self.db_seq:
            return
        delta = proj.take_delta()
        if delta.forget:  # a user was forgotten: no cached reply may still show them
            self.epoch += 1
            self.user_changed.clear()
        changed = self.user_changed
        for key in delta.counters.upserts:  # (kind, username, ...): before the tables change
            if key[1]:
                changed[key[1].lower()] = proj.last_seq
        for (name,) in delta.users.upserts:
            changed[name.lower()] = proj.last_seq
        for name, _alias in (*delta.aliases.upserts, *delta.aliases.deletes):  # user.stats lists aliases
            changed[name.lower()] = proj.last_seq
        try:
            apply.apply_batch(con, delta, proj.last_seq, proj.last_event_us)
        except duckdb.Error as exc:
            self.projector = None  # its State is now ahead of the tables: stop following
            failed = f"writing seq {self.db_seq + 1}..{proj.last_seq} failed: {exc}"
            self.status = replace(self.status, phase=Phase.STALLED, problem=failed)
            log.error("%s; serving seq %d until the next snapshot", failed, self.db_seq)
            return
        self.db_seq = proj.last_seq
        self.event_time_us = max(self.event_time_us, proj.last_event_us)

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._pending_since >= LINGER_SECONDS:
            self.flush()

    async def read(self, fn: Callable[..., T], *args: Any, need_seq: int = 0) -> T:
        """Run a read on the database thread, after writing what is projected if the read
        needs a sequence not yet written (a request's `min_seq`). Otherwise it reflects what
        is written, at most LINGER_SECONDS behind what arrived: a busy stream does not turn
        every read into a write."""

        def run() -> T:
            if need_seq > self.db_seq:
                self.flush()
            return fn(*args)

        return await self.db(run)

    @property
    def pending(self) -> bool:
        return self.projector is not None and self.projector.last_seq > self.db_seq

    async def _follow(self, reader: StreamReader) -> None:
        while self.projector is not None:
            got = await reader.wait(timeout=LINGER_SECONDS if self.pending else 1.0)
            if got:
                await self.gate.advance(await self.db(self._project, reader.take(FLUSH_EVENTS)))
            if self.pending:
                await self.db(self._flush_if_due)
        self._not_following()

    async def close(self) -> None:
        await self._stop_following()
        if self.con is not None:
            await self.db(self.con.close)
        self._executor.shutdown(wait=True)
        if self._tmp is not None:
            self._tmp.cleanup()
