"""A replica's private copy: load the newest snapshot, then follow the stream.

Three kinds of work, none waiting for another:
- projection (one thread, query/follower.py): each chunk of stream messages becomes a Delta,
  which the event loop applies at once to the read model (query/model.py: the user.* reads,
  answered there without DuckDB) and queues for the tables;
- the writer (one thread, query/tables.py): writes the queued Deltas to the in-memory DuckDB,
  coalesced, each in one transaction with the checkpoint;
- readers (a small pool, query/tables.py): every other read runs in a transaction on its own
  cursor, so it sees one committed sequence (DuckDB's MVCC) and never waits for a write.
Every answer reflects exactly one applied sequence: the model's, or the checkpoint the
reader's transaction sees. The replica never opens the writer's file and never publishes to
the stream's subjects.

This module decides which snapshot to serve (query/snapshot.py watches the pointer and opens
the copies), switches to it between two reads, and keeps the replica's status.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import duckdb
from nats.js import JetStreamContext
from userstats.query.follower import Follower, catch_up
from userstats.query.health import WAITING, Phase, ReplicaStatus
from userstats.query.model import ReadModel
from userstats.query.snapshot import fetch, watch_pointer
from userstats.query.tables import Tables, TableStore
from userstats.shared import batch as batches
from userstats.shared import schema
from userstats.shared.batch import BatchRunner, SequenceGate
from userstats.shared.projection import Projector
from userstats.shared.snapshots import SnapshotError, SnapshotPointer
from userstats.shared.stream import StreamReader

log = logging.getLogger(__name__)
T = TypeVar("T")

# Projection and the writer's Python parts run in threads beside the event loop that answers
# requests; with the default 5 ms switch interval the loop waits up to 5 ms for the GIL each
# time one of them holds it (p50 11 ms with 1,000 events/s arriving). 0.5 ms bounds that wait.
SWITCH_INTERVAL = 0.0005


class Replica:
    def __init__(self, js: JetStreamContext, stream: str, workdir: str = "", threads: int = 2) -> None:
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        self._js = js
        self._threads = threads
        self._tmp = tempfile.TemporaryDirectory(prefix="userstats-replica-") if not workdir else None
        self._dir = Path(workdir) if workdir else Path(self._tmp.name if self._tmp else ".")
        self._dir.mkdir(parents=True, exist_ok=True)  # a configured replica_dir need not exist yet
        self._store = TableStore(self._stalled_by)  # the tables, their writer and readers
        self.projector: Projector | None = None
        self._runner: BatchRunner | None = None  # projects into `projector` chunk by chunk
        self.model: ReadModel | None = None  # None when the tables cannot be followed
        self.pointer: SnapshotPointer | None = None
        self.gate = SequenceGate()  # projected: what a read will reflect (min_seq waits on it)
        self._follower = Follower(js, stream, self._store, self.gate, self._not_following)
        self.epoch = 0  # bumped when a snapshot replaces the tables (for the reply cache)
        self.loaded_at = 0.0
        self.status: ReplicaStatus = WAITING
        self.snapshot_failures = 0

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

    # ... and of the tables and the stream:
    @property
    def con(self) -> duckdb.DuckDBPyConnection | None:
        return self._store.con

    @property
    def db_seq(self) -> int:
        """Written to the tables; a read on them writes first if it needs more."""
        return self._store.db_seq

    @property
    def event_time_us(self) -> int:
        return self._store.event_time_us

    @property
    def pending(self) -> bool:
        return self._store.pending

    @property
    def stream_pending(self) -> int:
        return self._follower.pending

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread."""
        return await self._store.db(fn, *args)

    @property
    def applied_seq(self) -> int:
        return self.gate.seq

    async def wait_applied(self, seq: int, timeout: float) -> bool:
        return await self.gate.wait(seq, timeout)

    async def flush_to(self, seq: int) -> None:
        """Make the tables reflect at least `seq` (already projected): write what is pending."""
        await self._store.flush_to(seq)

    async def read(self, fn: Callable[..., T], *args: Any, need_seq: int = 0) -> T:
        """Run `fn(committed, *args)` on a reader thread at one committed sequence, writing
        first if it needs a sequence not yet written (query/tables.TableStore.read)."""
        return await self._store.read(fn, *args, need_seq=need_seq)

    # --- snapshots ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Watch the snapshot pointer; load the first one and any newer generation."""
        await watch_pointer(self._js, stop, self._on_pointer, lambda: self.loaded)

    async def _on_pointer(self, pointer: SnapshotPointer) -> None:
        if self._should_load(pointer):
            await self._load_with_retry(pointer)
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

    async def _load_with_retry(self, pointer: SnapshotPointer) -> None:
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
        started = time.perf_counter()
        con, projector, model, seq, event_us = await fetch(
            self._js, pointer, self._dir, self._threads, self._store.db
        )
        if self._older_of_same_tables(pointer, seq):
            con.close()
            self._ignore_older(pointer, seq)
            return
        reader: StreamReader | None = None
        try:
            if projector is not None and self.loaded and self.following and seq < self.applied_seq:
                reader = await self._follower.open(seq + 1)
                log.info("bringing the new tables from seq %d up to seq %d first", seq, self.applied_seq)
                assert model is not None
                await catch_up(projector, con, model, reader, self.applied_seq)
                await self._stop_following()
                await catch_up(projector, con, model, reader, self.applied_seq)  # what came meanwhile
                seq, event_us = projector.last_seq, max(event_us, projector.last_event_us)
            else:
                await self._stop_following()
        except BaseException:
            if reader is not None:
                await reader.stop()
            con.close()
            raise
        old = self._swap(con, projector, model, seq, event_us)
        # lower only when a version mismatch leaves a snapshot that cannot be followed
        self.gate.seq, self.pointer, self.loaded_at = seq, pointer, time.time()
        if old is not None:
            await self._store.retire(old)  # closed once the reads still on it are done
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
    ) -> Tables | None:
        """On the event loop, between two reads: no read sees a half-switched replica. The
        tables replaced, to retire."""
        self.epoch += 1
        old = self._store.install(con, seq, event_us)
        self.projector, self.model = projector, model
        self._runner = BatchRunner(projector, batches.REPLICA) if projector is not None else None
        if self.status.phase is Phase.WAITING:  # loaded from now on: there are tables to read
            self.status = replace(self.status, phase=Phase.SERVING)
        return old

    # --- following the stream ----------------------------------------------------------

    async def _start_following(self, reader: StreamReader | None = None) -> None:
        if reader is None:
            reader = await self._follower.open(self.applied_seq + 1)
        assert self._runner is not None
        self.status = replace(self.status, phase=Phase.FOLLOWING)
        self._follower.start(reader, self._runner, self.model)

    async def _stop_following(self) -> None:
        self._not_following()
        await self._follower.stop()
        await self._store.settle()  # the tables it writes may be about to be replaced

    def _stalled_by(self, failed: str) -> None:
        """A write to the served tables failed (query/tables.py): stop following."""
        self.projector = None  # its State is now ahead of the tables
        self.model = None  # and so is the model: every read goes to the tables
        self.status = replace(self.status, phase=Phase.STALLED, problem=failed)
        log.error("%s; serving seq %d until the next snapshot", failed, self.db_seq)

    async def close(self) -> None:
        await self._stop_following()
        await self._store.close()
        self._follower.close()
        if self._tmp is not None:
            self._tmp.cleanup()
