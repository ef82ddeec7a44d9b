"""The tables a replica serves: one writer thread, a small pool of readers.

- the writer (one thread, `db`): writes the queued Deltas to the in-memory DuckDB, coalesced
  (at the latest LINGER_SECONDS after they arrived, or once FLUSH_EVENTS are queued, or at
  once for a read whose `min_seq` is not written yet), each in one transaction with the
  checkpoint;
- readers (a small pool): every read on the tables runs in a transaction on its own cursor,
  so it sees one committed sequence (DuckDB's MVCC) and never waits for a write.
The copy a newer snapshot replaces is closed after the last read still on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
from userstats.shared import batch as batches
from userstats.shared import schema
from userstats.shared.batch import Batch, BatchRunner

T = TypeVar("T")

# Projected events are written at the latest this long after arriving, or once this many are
# pending, or for a min_seq read not yet written (shared/batch.REPLICA). Reads of the read model
# see them at once; a write costs DuckDB about 25-35 ms of CPU whatever its size (six or so
# keyed upserts), so writing every 50 ms took half a core at 1,000 events/s.
LINGER_SECONDS = batches.REPLICA.linger_seconds or 0.5
FLUSH_EVENTS = batches.REPLICA.max_events or 20_000
READERS = 2  # threads running reads on committed state


@dataclass(frozen=True)
class Committed:
    """What a read on the tables sees: a cursor in a transaction, at one checkpoint."""

    con: duckdb.DuckDBPyConnection
    seq: int
    event_us: int


class Tables:
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


class TableStore:
    """The served copy, its writer thread and its readers. `on_stall` is called (on the event
    loop) with what failed when a write to the served copy fails: from then on the copy stays
    as it is and what is projected is dropped, until `install` puts a new copy in its place."""

    def __init__(self, on_stall: Callable[[str], None]) -> None:
        self._on_stall = on_stall
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="replica-db")  # loads, writes
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="replica-read")
        self.con: duckdb.DuckDBPyConnection | None = None
        self._tables: Tables | None = None
        self.db_seq = 0  # written to the tables; a read on them writes first if it needs more
        self.event_time_us = 0
        self.stalled = False  # a write to the served copy failed
        self._pending: list[Batch] = []  # projected, not yet written
        self._pending_events = 0
        self._pending_since = 0.0
        self._write_task: asyncio.Task[None] | None = None

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def install(self, con: duckdb.DuckDBPyConnection, seq: int, event_us: int) -> Tables | None:
        """Serve `con`, written up to `seq` (event loop); the copy it replaces, to `retire`."""
        old = self._tables
        self.con, self._tables = con, Tables(con)
        self.db_seq, self.event_time_us = seq, event_us
        self._pending, self._pending_events = [], 0
        self.stalled = False
        return old

    async def retire(self, tables: Tables) -> None:
        await self.db(tables.retire)  # closed once the reads still on it are done

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def queue(self, b: Batch) -> None:
        """A projected batch, to be written with the next write."""
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(b)
        self._pending_events += b.events

    async def write_due(self) -> None:
        """Write what is pending if the policy says so: once FLUSH_EVENTS are pending (waiting
        for the write under way: projection keeps up with the writer), or LINGER_SECONDS after
        the first of them arrived."""
        if self._pending_events >= FLUSH_EVENTS:  # behind: let the writer keep up
            await self._write_now()
        elif self._pending and time.monotonic() - self._pending_since >= LINGER_SECONDS:
            self._start_write()

    def _start_write(self) -> None:
        """Hand what is pending to the writer, unless a write is under way (event loop)."""
        if self.stalled:  # the tables stay as they are until a snapshot
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

    async def _write(self, tables: Tables, taken: list[Batch]) -> None:
        seq, event_us = taken[-1].seq, max(b.event_us for b in taken)
        try:
            await self.db(self._write_batches, tables.con, taken)
        except duckdb.Error as exc:
            if tables is not self._tables:
                return  # replaced meanwhile
            self.stalled = True
            self._on_stall(f"writing seq {self.db_seq + 1}..{seq} failed: {exc}")
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

    async def settle(self) -> None:
        """Wait for the write under way, if any (the tables it writes may be about to be
        replaced); its failure is its own."""
        write = self._write_task
        if write is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(write)

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
        if self._tables is not None:
            await self.db(self._tables.retire)
        self._executor.shutdown(wait=True)
        self._readers.shutdown(wait=True)


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
