"""Erasing private messages from the stream once they are counted (the ProjectorLoop owns one).

A batch's raw PMs land in pm_erase_queue in the batch's own transaction. Right after that
commit, and before the checkpoint is announced, each one gets its "pm" journal event (user
and time, no text; that event is what counts it). The raw messages are then deleted from the
stream by a task of their own: JetStream's delete overwrites the message on disk, which
costs the server about 10-15 ms each and holds the stream meanwhile, so on the loop a flood
of PMs would hold projection back, and at full speed the deletes would starve the stream. A kill -9
anywhere in between leaves the queue rows committed, so the loop finishes the job when it
starts: the event appended twice counts once, a message already gone is fine. What a kill
left behind (counted, no longer queued), the sweep at start finds; a replay deletes the raw
PM of each journal event it meets again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import duckdb
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError
from userstats.ingest.journal import Journal
from userstats.ingest.metrics import IngestMetrics
from userstats.shared import events as ev
from userstats.shared import forget
from userstats.shared.delta import TableDelta
from userstats.shared.keys import PmEraseKey
from userstats.shared.projection import RAW_PM_SUBJECTS

log = logging.getLogger(__name__)

# JetStream's "no message found" and "sequence not found" (the raw PM is already gone)
GONE = (10037, 10043)
# The server erases one at a time anyway: each delete rewrites the block holding the message
# and holds the stream meanwhile (15 ms with S2, bench.pm_deletes). With 4 at once under a
# flood of PMs, test_cluster's stepdown lost about 1 s of events in 2 runs of 6 (see README,
# "A flood of PMs on a cluster").
DELETES_AT_ONCE = 1

Held = tuple[str, int, str, str]  # username, event time (us), subject, error: as in pm_erase_queue


class PmErasure:
    """The raw PMs committed and not erased yet, and their erasure (the module says when)."""

    def __init__(
        self, js: JetStreamContext, con: duckdb.DuckDBPyConnection, stream: str, metrics: IngestMetrics
    ) -> None:
        self._js = js
        self._stream = stream
        self._metrics = metrics
        self._journal = Journal(js, stream)
        # raw PMs still in the stream (seq -> username, event time, subject, error): as queued
        self._erase: dict[int, Held] = erase_queue(con)
        # those ready to delete: True once this run appended the journal event, False for a
        # forgotten user's (never counted, just deleted)
        self._ready: dict[int, bool] = {}
        self._erased: set[int] = set()  # deleted by this run, journal event not projected yet
        self._projected: set[int] = set()  # journal event projected before the delete was done
        self._strays: set[int] = set()  # raw PMs to delete that are not queued (replay, sweep)
        self._wake = asyncio.Event()
        self.pms_erased = 0
        self._swept = False  # raw PMs left behind by a run killed between count and delete
        metrics.pms_pending.set_function(lambda: self.pending)

    def reload(self, con: duckdb.DuckDBPyConnection) -> None:
        """Take in the queue as the tables hold it, after a failed write (worker thread)."""
        self._erase.update(erase_queue(con))

    @property
    def pending(self) -> int:
        """Raw PMs this run knows are still to be deleted."""
        return len(self._erase) + len(self._strays)

    async def resume(self, applied_seq: int, forgotten: set[str]) -> None:
        """At each start of the loop: sweep the stream once (until a sweep could ask it), then
        finish what a previous run committed but did not erase."""
        if not self._swept:
            self._swept = await self.sweep_raw_pms(applied_seq)
        await self.erase_pms(forgotten)

    def committed(self, held: TableDelta[PmEraseKey]) -> bool:
        """Note a committed batch's pm_erase_queue changes: its raw PMs (upserts) and the "pm"
        journal events it projected (deletes). True if there is something to erase now."""
        for (pm_seq,), (username, time_us, subject, error) in held.upserts.items():
            self._erase[int(pm_seq)] = (str(username), int(time_us), str(subject), str(error))
        for (pm_seq,) in held.deletes:  # "pm" journal events this batch projected
            if pm_seq in self._erased:
                self._erased.discard(pm_seq)  # the usual case: this run deleted the raw one
            elif pm_seq in self._erase:
                self._projected.add(int(pm_seq))  # its raw one is being deleted
            else:  # a replay (the raw one and its event in one batch)
                self._strays.add(int(pm_seq))
                self._wake.set()
        return len(self._ready) < len(self._erase)

    async def erase_pms(self, forgotten: set[str]) -> None:
        """For the committed raw PMs, oldest first: append each one's "pm" journal event (one
        after the other: they must be stored in seq order, see PmRedacted) and hand the raw
        message to the deleting task. What fails stays queued for the next batch (or the next
        start). `forgotten`: the State's forgotten user hashes (a set that only grows)."""
        for pm_seq in sorted(self._erase.keys() - self._ready.keys()):
            username, time_us, subject, error = self._erase[pm_seq]
            if username and forget.user_hash(username) in forgotten:
                self._ready[pm_seq] = False  # forgotten since it was held: just deleted
                continue
            event = ev.PmRedacted(ev.from_us(time_us), pm_seq, username, subject, error)
            try:
                await self._journal.append(event, msg_id=f"userstats-pm-{pm_seq}")
            except Exception as exc:  # NATS unavailable: the queue keeps it
                log.warning("PM at seq %d: journal event not appended yet (%s); retrying later", pm_seq, exc)
                break
            self._ready[pm_seq] = True
        if self._ready:
            self._wake.set()

    async def run(self, stop: asyncio.Event, behind: Callable[[], bool] = lambda: False) -> None:
        """Delete the raw PMs handed over, DELETES_AT_ONCE at a time and pausing as long as each
        delete took, until stopped (then what is left waits for the next start: the queue or
        the sweep still has it). While `behind()` (the projection is catching up) it waits."""
        while not stop.is_set():
            if not (self._ready or self._strays):
                self._wake.clear()
                waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                _, rest = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in rest:
                    w.cancel()
                continue
            if behind():  # projection first: a delete holds the stream the reader reads
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
                continue
            started = time.monotonic()
            ok = await self.delete_some()
            # a delete holds the stream ~10-15 ms on the server: leave it free as long again
            pause = max(time.monotonic() - started, 0.01) if ok else 1.0  # else NATS is away
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)

    async def delete_some(self) -> bool:
        """One round of deletes, oldest first; False if one failed (kept for the next)."""
        chunk = sorted(self._ready)[:DELETES_AT_ONCE]
        chunk += sorted(self._strays)[: DELETES_AT_ONCE - len(chunk)]
        results = await asyncio.gather(*(self._delete(s) for s in chunk), return_exceptions=True)
        ok = True
        for pm_seq, result in zip(chunk, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("raw PM at seq %d not deleted yet (%s); retrying later", pm_seq, result)
                ok = False
                continue
            if pm_seq in self._strays:
                self._strays.discard(pm_seq)
            else:
                appended = self._ready.pop(pm_seq)
                del self._erase[pm_seq]
                if pm_seq in self._projected:
                    self._projected.discard(pm_seq)
                elif appended:
                    self._erased.add(pm_seq)
            self.pms_erased += 1
            self._metrics.pms_erased.inc()
        return ok

    async def sweep_raw_pms(self, applied_seq: int) -> bool:
        """Hand the deleting task the raw PMs at or below the checkpoint (`applied_seq`) that
        are not queued: counted already, but the run that would have deleted them was killed
        (the batch with their journal event had removed them from the queue). The stream is
        asked for each raw PM it still holds, normally none. False if it could not be asked
        (retried at the next start of the loop)."""
        at = 1
        try:
            while True:
                try:
                    msg = await self._js.get_msg(self._stream, seq=at, subject=RAW_PM_SUBJECTS, next=True)
                except NotFoundError:
                    return True
                seq = int(msg.seq or 0)
                if seq > applied_seq:
                    return True
                if seq not in self._erase:
                    log.info("raw PM at seq %d was counted but not deleted; deleting it", seq)
                    self._strays.add(seq)
                    self._wake.set()
                at = seq + 1
        except Exception as exc:  # NATS unavailable: the next start looks again
            log.warning("looking for raw PMs left in the stream failed (%s); looking again later", exc)
            return False

    async def _delete(self, seq: int) -> None:
        try:
            await self._js.delete_msg(self._stream, seq)
        except NotFoundError:
            pass
        except APIError as exc:
            if exc.err_code not in GONE:
                raise


def erase_queue(con: duckdb.DuckDBPyConnection) -> dict[int, Held]:
    rows = con.execute("SELECT seq, username, time_us, subject, error FROM pm_erase_queue").fetchall()
    return {int(seq): (str(user), int(t), str(subject), str(error)) for seq, user, t, subject, error in rows}
