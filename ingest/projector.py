"""The projector loop: stream from checkpoint+1 -> Projector -> one transaction per batch.

Projecting batch N+1 overlaps with writing batch N (DuckDB releases the GIL). If a write
fails, the DuckDB transaction rolls back, so the tables still match the checkpoint: we
drop the in-memory State, reload it from the tables and read the stream again from there.

A watchdog restarts the stream reader when it has delivered nothing for a while although
the stream holds messages beyond the checkpoint (an ordered consumer that did not come back
after the cluster lost and regained its quorum).

Private messages: the raw PMs a batch committed get their "pm" journal events right after
its commit and before the checkpoint is announced; a task of the loop's PmErasure
(ingest/pm_erasure.py) then deletes the raw messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

import duckdb
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from userstats.ingest.metrics import IngestMetrics
from userstats.ingest.pm_erasure import PmErasure
from userstats.shared import apply, batch
from userstats.shared.batch import Batch, BatchResult, BatchRunner, SequenceGate
from userstats.shared.projection import Projector
from userstats.shared.stream import StreamReader
from userstats.shared.subjects import STREAM_SUBJECTS

log = logging.getLogger(__name__)

BEHIND_EVENTS = 2_000  # catching up: raw PM deletes wait (they hold the stream on the server)
STALL_SECONDS = 5.0  # nothing delivered this long, with the stream beyond the checkpoint: restart


class ProjectorLoop:
    def __init__(
        self,
        js: JetStreamContext,
        con: duckdb.DuckDBPyConnection,
        stream: str,
        metrics: IngestMetrics,
        batch_max_events: int = batch.INGEST.max_events or 20_000,
        batch_max_seconds: float = batch.INGEST.max_seconds or 0.5,
        batch_linger_seconds: float = batch.INGEST.linger_seconds or 0.1,
        on_forgotten: Callable[[list[int]], None] | None = None,
        stream_last_seq: Callable[[], int] | None = None,
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self._js = js
        self._con = con
        self._stream = stream
        self._metrics = metrics
        self._policy = dataclasses.replace(
            batch.INGEST,
            max_events=batch_max_events,
            max_seconds=batch_max_seconds,
            linger_seconds=batch_linger_seconds,
        )
        self._on_forgotten = on_forgotten  # seqs of a forgotten user's events, once committed
        self._stream_last_seq = stream_last_seq  # the stream's last seq as last polled
        self._stall_seconds = stall_seconds
        cp = apply.read_checkpoint(con)
        self.gate = SequenceGate(cp.seq)
        self.generation = cp.generation
        self.runner = BatchRunner(Projector(apply.load_state(con), cp.seq, cp.event_time_us), self._policy)
        self.write_error: str | None = None  # the last failed write, until one succeeds
        self.reader: StreamReader | None = None  # the one reading now
        self.pms = PmErasure(js, con, stream, metrics)

    @property
    def projector(self) -> Projector:
        return self.runner.projector

    def _reload(self) -> BatchRunner:
        """A runner at the tables' checkpoint, after a failed write (worker thread)."""
        cp = apply.read_checkpoint(self._con)
        self.pms.reload(self._con)
        return BatchRunner(Projector(apply.load_state(self._con), cp.seq, cp.event_time_us), self._policy)

    @property
    def applied_seq(self) -> int:
        """The stream sequence the tables reflect (committed)."""
        return self.gate.seq

    async def wait_applied(self, seq: int, timeout: float) -> bool:
        """Wait until the tables reflect `seq`; False on timeout."""
        return await self.gate.wait(seq, timeout)

    def _write(self, b: Batch) -> BatchResult:
        result = BatchRunner.write(self._con, b)
        self._metrics.batch_seconds.observe(result.write_seconds)
        self._metrics.batch_events.observe(result.events)
        return result

    async def _committed(self, result: BatchResult) -> None:
        seq = result.seq
        if self.write_error is not None:
            log.info("writing works again; tables at seq %d", seq)
            self.write_error = None
        if seq > self._metrics.projected_through:  # counted once, even when a swap re-projects them
            self._metrics.events_projected.inc(seq - max(self._metrics.projected_through, self.applied_seq))
            self._metrics.projected_through = seq
        if result.dead_letters:
            self._metrics.dead_letters.inc(result.dead_letters)
            log.warning("seq <= %d: %d message(s) recorded as dead letters", seq, result.dead_letters)
        if result.forgotten_seqs and self._on_forgotten is not None:
            self._on_forgotten(list(result.forgotten_seqs))
        await self.gate.advance(seq)

    async def run(self, stop: asyncio.Event) -> None:
        """Project until stopped. A failed write (disk full, I/O error) rolls back, so the
        tables stay at the last checkpoint: report it, wait, reload the State from the
        tables and read the stream again from there, as often as it takes."""
        deleter = asyncio.create_task(self.pms.run(stop, self._behind))  # the raw PMs' deletes
        try:
            await self._run(stop)
        finally:
            if not stop.is_set():
                deleter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deleter

    def _behind(self) -> bool:
        """Catching up: the stream holds more than a batch beyond what was projected."""
        last = self._stream_last_seq() if self._stream_last_seq is not None else 0
        return last - self.runner.projector.last_seq > BEHIND_EVENTS

    async def _run(self, stop: asyncio.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                if self.write_error is not None:
                    self.runner = await asyncio.to_thread(self._reload)
                await self.pms.resume(self.applied_seq, self.projector.state.forgotten)
                await self._run_once(stop)
                return
            except (duckdb.Error, OSError) as exc:
                self._metrics.apply_failures.inc()
                self.write_error = str(exc).splitlines()[0][:300]
                log.error(
                    "writing a batch failed (%s); tables stay at seq %d. Retrying in %.0f s",
                    self.write_error,
                    self.applied_seq,
                    backoff,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 30.0)

    async def _run_once(self, stop: asyncio.Event) -> None:
        self.reader = reader = StreamReader(self._js, self._stream, STREAM_SUBJECTS, self.applied_seq + 1)
        await reader.start()
        log.info("projecting from seq %d", self.applied_seq + 1)
        pending: asyncio.Task[None] | None = None
        delivered = time.monotonic()
        stalled = False  # restarted since the last delivery (warn once per stall)
        try:
            while not stop.is_set():
                if not await reader.wait(timeout=0.5):
                    if time.monotonic() - delivered >= self._stall_seconds and await self._stalled():
                        if pending is not None:
                            await pending  # the tables then match the runner's State
                            pending = None
                        self.reader = reader = await self._restart(reader, stalled)
                        stalled = True
                        delivered = time.monotonic()
                    continue
                delivered = time.monotonic()
                stalled = False
                runner = self.runner
                await runner.fill(reader)
                b = runner.take()
                if pending is not None:
                    await pending
                pending = asyncio.create_task(self._commit(b))
            if pending is not None:
                await pending
                pending = None
        finally:
            await reader.stop()
            if pending is not None and not pending.done():
                # Not cancelled: its write goes on in a worker thread on the connection
                # either way, and a reload must not reach the connection before it ends.
                with contextlib.suppress(duckdb.Error, OSError):
                    await asyncio.shield(pending)

    async def _stalled(self) -> bool:
        """Whether the stream holds a message after the projected seq that the reader has
        not delivered (the polled last seq says so, and a direct get confirms it: the
        messages at the end may have been deleted)."""
        if self._stream_last_seq is None or self._stream_last_seq() <= self.runner.projector.last_seq:
            return False
        try:
            msg = await self._js.get_msg(
                self._stream, self.runner.projector.last_seq + 1, subject=">", next=True
            )
        except NotFoundError:
            return False
        except Exception as exc:  # no quorum, no connection: the reader cannot do better now
            log.debug("checking the stream for undelivered messages: %s", exc)
            return False
        return msg.seq is not None

    async def _restart(self, reader: StreamReader, again: bool) -> StreamReader:
        """A new reader from the checkpoint + 1 in place of one that stopped delivering."""
        seq = self.applied_seq + 1
        log.log(
            logging.DEBUG if again else logging.WARNING,
            "stream %s: the reader delivered nothing for %.0f s while the stream holds seq %d and "
            "later; restarting it from seq %d",
            self._stream,
            self._stall_seconds,
            seq,
            seq,
        )
        self._metrics.reader_restarts.inc()
        await reader.stop()
        fresh = StreamReader(self._js, self._stream, STREAM_SUBJECTS, seq)
        try:
            await fresh.start()
        except Exception as exc:  # the cluster cannot create a consumer yet: try again later
            log.debug("restarting the stream reader: %s", exc)
        return fresh

    async def _commit(self, b: Batch) -> None:
        result = await asyncio.to_thread(self._write, b)
        if self.pms.committed(result.delta.pm_erase):  # before the checkpoint is announced
            await self.pms.erase_pms(self.projector.state.forgotten)
        await self._committed(result)
