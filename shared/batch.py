"""The one batch loop: project stored messages, and when the flush policy says so, take the
delta and write it with the checkpoint in one transaction (shared/apply.apply_batch).

Every writer uses it: ingest's projector (which projects batch N+1 while batch N is being
written), the rebuild's worker process, the query replica and the tests. They differ only in
their FlushPolicy, named here, and in what they do with the BatchResult.

The SequenceGate at the end is what a runner's owner advances once a batch is written (the
seq min_seq and read-your-writes wait for).

A runner is used from one thread at a time, except that a Batch it handed out may be written
(`write`) on another thread while the runner projects the next one.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import NamedTuple, Protocol

import duckdb
from userstats.shared import apply
from userstats.shared.delta import Delta
from userstats.shared.projection import DEAD_LETTERS_KEY, Projector
from userstats.shared.stream import Item

Message = tuple[int, str, bytes, int]  # (seq, subject, data, stored time in us), like stream.Item


@dataclass(frozen=True)
class FlushPolicy:
    """When a batch is written. A limit left at None never fires; with none set, a batch is
    written only when its owner asks (flush at the end, or before a read that needs it)."""

    max_events: int | None = None  # events projected since the last write
    max_pending_rows: int | None = None  # rows the delta would write (checked every check_every events)
    check_every: int = 10_000
    max_seconds: float | None = None  # projection work (CPU) spent on the batch
    linger_seconds: float | None = None  # time since the batch's first event


# ingest: a batch holds at most 20k events or half a second of projection work, and lingers
# 0.1 s so a trickle of events shares one transaction (they are safe in the stream meanwhile).
# The numbers are the defaults of the batch_* settings, which override them.
INGEST = FlushPolicy(max_events=20_000, max_seconds=0.5, linger_seconds=0.1)
# rebuild: counts of the same keys merge in memory, so write only when this many rows are
# pending (or at the end): 1M simulator events write ~22k rows once instead of ~175k rows in
# twenty 50k-event batches. It also bounds memory.
REBUILD = FlushPolicy(max_pending_rows=250_000, check_every=10_000)
# query replica (query/follower.py, query/tables.py): each chunk is taken at once for the
# read model, and the tables are written lazily, at most 0.5 s after an event arrived or once
# 20k events are pending (a read that needs a projected seq not yet written writes first).
REPLICA = FlushPolicy(max_events=20_000, linger_seconds=0.5)
# everything in one transaction at the end (tests, small tools)
AT_END = FlushPolicy()


def dead_letters(delta: Delta) -> int:
    """How many messages of this batch became dead letters."""
    row = delta.counters.upserts.get(DEAD_LETTERS_KEY)
    return int(row[0]) if row else 0


def users_touched(delta: Delta) -> frozenset[str]:
    """Lower-cased names whose rows the batch changes: counters, users and aliases (a reply
    about one of them may be out of date once it is written)."""
    names = {key[1].lower() for key in delta.counters.upserts if key[1]}
    names.update(name.lower() for (name,) in delta.users.upserts)
    names.update(name.lower() for name, _alias in (*delta.aliases.upserts, *delta.aliases.deletes))
    return frozenset(names)


class Batch(NamedTuple):
    """A projected batch taken from the runner, not yet written."""

    delta: Delta
    seq: int  # the checkpoint it moves the tables to
    event_us: int
    events: int  # messages projected into it


@dataclass(frozen=True)
class BatchResult:
    """A batch written and committed."""

    seq: int  # the tables' checkpoint now
    event_us: int
    events: int
    dead_letters: int
    forgot: bool  # a user was forgotten: every cached reply may name them
    forgotten_seqs: tuple[int, ...]  # stream seqs of a forgotten user's events (ingest deletes them)
    write_seconds: float  # the DuckDB transaction
    delta: Delta = field(repr=False, compare=False)

    @functools.cached_property
    def users(self) -> frozenset[str]:
        """Lower-cased names whose rows changed (users_touched), worked out when first asked:
        ingest and the rebuild do not need them."""
        return users_touched(self.delta)


class Source(Protocol):
    """What `fill` reads from (shared/stream.StreamReader)."""

    def buffered(self) -> int: ...

    async def wait(self, timeout: float | None = None) -> bool: ...

    def take(self, limit: int) -> list[Item]: ...


class BatchRunner:
    """Projects messages into `projector` and writes them as the policy says."""

    def __init__(self, projector: Projector, policy: FlushPolicy) -> None:
        self.projector = projector
        self.policy = policy
        self.events = 0  # projected since the last take
        self.written_seq = projector.last_seq  # the seq the last batch taken moves the tables to
        self._opened = 0.0  # monotonic time of the pending batch's first event
        self._work = 0.0  # projection seconds spent on the pending batch
        self._unchecked = 0  # events since the pending rows were last looked at

    @property
    def pending(self) -> bool:
        """Whether something is projected but not taken (not written)."""
        return self.projector.last_seq > self.written_seq

    def project(self, items: Iterable[Message]) -> int:
        """Project messages in order; return how many."""
        if not self.events:
            self._opened = time.monotonic()
        project = self.projector.project
        started = time.perf_counter()
        n = 0
        for seq, subject, data, stream_us in items:
            project(seq, subject, data, stream_us)
            n += 1
        self._work += time.perf_counter() - started
        self.events += n
        self._unchecked += n
        return n

    def full(self) -> bool:
        """Whether the pending batch reached a size or work limit (write it now)."""
        p = self.policy
        if p.max_events is not None and self.events >= p.max_events:
            return True
        if p.max_seconds is not None and self._work >= p.max_seconds:
            return True
        if p.max_pending_rows is not None and self._unchecked >= p.check_every:
            self._unchecked = 0
            return self.projector.pending_rows() >= p.max_pending_rows
        return False

    def linger_left(self) -> float | None:
        """Seconds until the pending batch has lingered long enough (None: no linger limit)."""
        if self.policy.linger_seconds is None:
            return None
        return self.policy.linger_seconds - (time.monotonic() - self._opened)

    def due(self) -> bool:
        """Whether the pending batch should be written now: full, or lingered long enough."""
        if not self.events:
            return False
        left = self.linger_left()
        return self.full() or (left is not None and left <= 0)

    async def fill(self, source: Source, chunk: int = 2000) -> int:
        """Project from `source` until the batch is full, or the source has nothing more within
        the linger time (ingest's shape). Returns the events in the batch."""
        limit = self.policy.max_events
        while not self.full():
            self.project(source.take(chunk if limit is None else min(chunk, limit - self.events)))
            if self.full():
                break
            if source.buffered():
                continue
            left = self.linger_left()
            if left is None:
                left = 0.0
            if left <= 0 or not await source.wait(timeout=left):
                break
        return self.events

    def take(self) -> Batch:
        """The pending batch, ready to write; the next batch starts empty."""
        p = self.projector
        batch = Batch(p.take_delta(), p.last_seq, p.last_event_us, self.events)
        self.written_seq = p.last_seq
        self.events = 0
        self._work = 0.0
        self._unchecked = 0
        return batch

    @staticmethod
    def write(con: duckdb.DuckDBPyConnection, batch: Batch) -> BatchResult:
        """Write a batch with its checkpoint in one transaction (any thread)."""
        delta = batch.delta
        started = time.perf_counter()
        apply.apply_batch(con, delta, batch.seq, batch.event_us)
        seconds = time.perf_counter() - started
        return BatchResult(
            batch.seq,
            batch.event_us,
            batch.events,
            dead_letters(delta),
            bool(delta.forget),
            tuple(delta.forgotten_seqs),
            seconds,
            delta,
        )

    def flush(self, con: duckdb.DuckDBPyConnection) -> BatchResult:
        """Take the pending batch and write it, here and now."""
        return self.write(con, self.take())

    def run(
        self, con: duckdb.DuckDBPyConnection, items: Iterable[Message], chunk: int = 2000
    ) -> list[BatchResult]:
        """Project items, writing whenever the batch is full, and the rest at the end (the
        catch-up shape: nothing lingers)."""
        results = []
        limit = self.policy.max_events
        it = iter(items)
        while part := list(islice(it, chunk if limit is None else min(chunk, limit - self.events))):
            self.project(part)
            if self.full():
                results.append(self.flush(con))
        if self.pending or self.events:
            results.append(self.flush(con))
        return results


class SequenceGate:
    """`wait(n)` returns once `seq` reaches n (read-your-writes, min_seq). `seq` grows with
    each advance; a replica that loads a rebuilt generation may set it lower directly."""

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self.listeners: list[Callable[[], None]] = []  # called after every advance
        self._cond = asyncio.Condition()

    async def advance(self, seq: int) -> None:
        self.seq = seq
        async with self._cond:
            self._cond.notify_all()
        for listener in self.listeners:
            listener()

    async def wait(self, seq: int, timeout: float) -> bool:
        """True once `seq` is reached, False after `timeout` seconds."""
        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(lambda: self.seq >= seq), timeout)
            except TimeoutError:
                return False
        return True
