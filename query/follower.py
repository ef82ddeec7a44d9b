"""Following the stream into a replica's copy: projection, chunk by chunk.

Each chunk of stream messages becomes a Delta (on the projection thread, or on the event loop
for a small chunk), which the event loop applies at once to the read model (query/model.py:
the user.* reads, answered there without DuckDB) and queues for the tables (query/tables.py,
which writes it on its own thread). The sequence gate then moves to the chunk's last seq: what
a read will reflect, and what a `min_seq` waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import duckdb
from nats.js import JetStreamContext
from userstats.query.model import ReadModel
from userstats.query.tables import FLUSH_EVENTS, LINGER_SECONDS, TableStore
from userstats.shared import batch as batches
from userstats.shared import subjects
from userstats.shared.batch import Batch, BatchRunner, SequenceGate
from userstats.shared.projection import Projector
from userstats.shared.snapshots import SnapshotError
from userstats.shared.stream import Item, StreamReader

CHUNK_EVENTS = 2_000  # projected per step: the read model sees each chunk at once
CHUNK_SECONDS = 0.004  # at most one chunk per this long: a trickle of events comes in a few
INLINE_EVENTS = 200  # chunks this small are projected on the event loop, larger ones in a thread


async def catch_up(
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


class Follower:
    """Follows the stream into the served copy: its model at once, its tables through the
    store. Following ends when it is stopped or a write fails (`on_end` is then called)."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        store: TableStore,
        gate: SequenceGate,
        on_end: Callable[[], None],
    ) -> None:
        self._js = js
        self._stream = stream
        self._store = store
        self._gate = gate
        self._on_end = on_end
        self._projecting = ThreadPoolExecutor(1, thread_name_prefix="replica-project")
        self._reader: StreamReader | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Stream messages not yet projected."""
        return self._reader.pending + self._reader.buffered() if self._reader else 0

    async def open(self, from_seq: int) -> StreamReader:
        """A started reader of the stream from `from_seq`."""
        reader = StreamReader(self._js, self._stream, subjects.STREAM_SUBJECTS, from_seq, max_buffer=20_000)
        await reader.start()
        return reader

    def start(self, reader: StreamReader, runner: BatchRunner, model: ReadModel | None) -> None:
        """Follow `reader` into `runner`'s projector, the served model and the store's tables."""
        self._reader = reader
        self._task = asyncio.create_task(self._follow(reader, runner, model), name="follow")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    def _project(self, runner: BatchRunner, items: list[Item]) -> Batch:
        """Project a chunk and take it (projection thread, or the loop for a small one)."""
        runner.project(items)
        return runner.take()

    def _stalled(self) -> bool:
        return self._store.stalled

    async def _follow(self, reader: StreamReader, runner: BatchRunner, model: ReadModel | None) -> None:
        loop = asyncio.get_running_loop()
        store = self._store
        last_chunk = 0.0
        while not store.stalled:
            got = await reader.wait(timeout=LINGER_SECONDS if store.pending else 1.0)
            if got and not store.stalled:
                wait = last_chunk + CHUNK_SECONDS - time.monotonic()
                if wait > 0:  # a trickle: gather a few ms of it into one chunk
                    await asyncio.sleep(wait)
                last_chunk = time.monotonic()
                items = reader.take(CHUNK_EVENTS)
                if len(items) <= INLINE_EVENTS:  # a millisecond or so: cheaper than a thread hop
                    b = self._project(runner, items)
                else:
                    b = await loop.run_in_executor(self._projecting, self._project, runner, items)
                if self._stalled():  # a write failed meanwhile
                    break
                if model is not None:
                    model.apply(b.delta, b.seq, b.event_us)  # on the loop: reads see one sequence
                store.queue(b)
                await self._gate.advance(b.seq)
            await store.write_due()
        self._on_end()

    def close(self) -> None:
        self._projecting.shutdown(wait=True)
