"""The projector loop: stream from checkpoint+1 -> Projector -> one transaction per batch.

Projecting batch N+1 overlaps with writing batch N (DuckDB releases the GIL). If a write
fails, the DuckDB transaction rolls back, so the tables still match the checkpoint: we
drop the in-memory State, reload it from the tables and read the stream again from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import duckdb
from nats.js import JetStreamContext
from userstats.ingest.metrics import IngestMetrics
from userstats.ingest.stream_setup import STREAM_SUBJECTS
from userstats.shared import apply
from userstats.shared.delta import Delta
from userstats.shared.projection import DEAD_LETTERS_KEY, Projector
from userstats.shared.seqgate import SequenceGate
from userstats.shared.stream import StreamReader

log = logging.getLogger(__name__)


class ProjectorLoop:
    def __init__(
        self,
        js: JetStreamContext,
        con: duckdb.DuckDBPyConnection,
        stream: str,
        metrics: IngestMetrics,
        batch_max_events: int = 20_000,
        batch_max_seconds: float = 0.5,
        batch_linger_seconds: float = 0.1,
        on_forgotten: Callable[[list[int]], None] | None = None,
    ) -> None:
        self._js = js
        self._con = con
        self._stream = stream
        self._metrics = metrics
        self._max_events = batch_max_events
        self._max_seconds = batch_max_seconds
        self._linger = batch_linger_seconds
        self._on_forgotten = on_forgotten  # seqs of a forgotten user's events, once committed
        cp = apply.read_checkpoint(con)
        self.gate = SequenceGate(cp.seq)
        self.generation = cp.generation
        self.projector = Projector(apply.load_state(con), cp.seq, cp.event_time_us)
        self.write_error: str | None = None  # the last failed write, until one succeeds

    def _reload(self) -> Projector:
        """A Projector at the tables' checkpoint, after a failed write (worker thread)."""
        cp = apply.read_checkpoint(self._con)
        return Projector(apply.load_state(self._con), cp.seq, cp.event_time_us)

    @property
    def applied_seq(self) -> int:
        """The stream sequence the tables reflect (committed)."""
        return self.gate.seq

    async def wait_applied(self, seq: int, timeout: float) -> bool:
        """Wait until the tables reflect `seq`; False on timeout."""
        return await self.gate.wait(seq, timeout)

    def _write(self, delta: Delta, seq: int, event_us: int, events: int) -> None:
        started = time.perf_counter()
        apply.apply_batch(self._con, delta, seq, event_us)
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_events.observe(events)

    async def _committed(self, delta: Delta, seq: int, events: int) -> None:
        if self.write_error is not None:
            log.info("writing works again; tables at seq %d", seq)
            self.write_error = None
        if seq > self._metrics.projected_through:  # counted once, even when a swap re-projects them
            self._metrics.events_projected.inc(seq - max(self._metrics.projected_through, self.applied_seq))
            self._metrics.projected_through = seq
        dead = delta.counters.upserts.get(DEAD_LETTERS_KEY)
        if dead:
            self._metrics.dead_letters.inc(dead[0])
            log.warning("seq <= %d: %d message(s) recorded as dead letters", seq, dead[0])
        if delta.forgotten_seqs and self._on_forgotten is not None:
            self._on_forgotten(delta.forgotten_seqs)
        await self.gate.advance(seq)

    async def run(self, stop: asyncio.Event) -> None:
        """Project until stopped. A failed write (disk full, I/O error) rolls back, so the
        tables stay at the last checkpoint: report it, wait, reload the State from the
        tables and read the stream again from there, as often as it takes."""
        backoff = 1.0
        while not stop.is_set():
            try:
                if self.write_error is not None:
                    self.projector = await asyncio.to_thread(self._reload)
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
        reader = StreamReader(self._js, self._stream, STREAM_SUBJECTS, self.applied_seq + 1)
        await reader.start()
        log.info("projecting from seq %d", self.applied_seq + 1)
        pending: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                if not await reader.wait(timeout=0.5):
                    continue
                delta, seq, event_us, n = await self._project_batch(reader)
                if pending is not None:
                    await pending
                pending = asyncio.create_task(self._commit(delta, seq, event_us, n))
            if pending is not None:
                await pending
                pending = None
        finally:
            await reader.stop()
            if pending is not None and not pending.done():
                pending.cancel()

    async def _project_batch(self, reader: StreamReader) -> tuple[Delta, int, int, int]:
        """Project until the batch is full, has cost max_seconds of work, or has lingered.

        The linger lets a trickle of events share one transaction: they are safe in the
        stream meanwhile, and a DuckDB write costs about the same for 1 event or 1000.
        """
        proj = self.projector
        opened = time.monotonic()
        work = 0.0
        n = 0
        while n < self._max_events and work < self._max_seconds:
            started = time.perf_counter()
            for item in reader.take(min(2000, self._max_events - n)):
                proj.project(item.seq, item.subject, item.data, item.stream_us)
                n += 1
            work += time.perf_counter() - started
            left = self._linger - (time.monotonic() - opened)
            if reader.buffered():
                continue
            if left <= 0 or not await reader.wait(timeout=left):
                break
        delta = proj.take_delta()
        return delta, proj.last_seq, proj.last_event_us, n

    async def _commit(self, delta: Delta, seq: int, event_us: int, n: int) -> None:
        await asyncio.to_thread(self._write, delta, seq, event_us, n)
        await self._committed(delta, seq, n)
