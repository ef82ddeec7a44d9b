"""Erasing private messages from the stream once they are counted (the ProjectorLoop owns one).

A batch's raw PMs land in pm_erase_queue in the batch's own transaction. Right after that
commit, and before the checkpoint is announced, each one gets its "pm" journal event (user
and time, no text; that event is what counts it) and the raw message is deleted from the
stream. A kill -9 anywhere in between leaves the queue rows committed, so the loop finishes
the job when it starts: the event appended twice counts once, a message already gone is
fine. What a failed delete and a kill left behind (counted, no longer queued), the sweep at
start finds; a replay deletes the raw PM of each journal event it meets again.
"""

from __future__ import annotations

import asyncio
import logging

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
DELETES_AT_ONCE = 32

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
        # raw PMs to erase (seq -> username, event time, subject, error): as in pm_erase_queue
        self._erase: dict[int, Held] = erase_queue(con)
        self.pms_erased = 0
        self._swept = False  # raw PMs left behind by a run killed between count and delete
        self._erased: set[int] = set()  # raw PMs deleted whose journal event is not projected yet
        self._replayed: set[int] = set()  # raw seqs of journal events projected again: delete

    def reload(self, con: duckdb.DuckDBPyConnection) -> None:
        """Take in the queue as the tables hold it, after a failed write (worker thread)."""
        self._erase.update(erase_queue(con))

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
            elif pm_seq not in self._erase:  # a replay (the raw one and its event in one batch)
                self._replayed.add(int(pm_seq))
        return bool(self._erase or self._replayed)

    async def erase_pms(self, forgotten: set[str]) -> None:
        """For the committed raw PMs, oldest first: append each one's "pm" journal event (one
        after the other: they must be stored in seq order, see PmRedacted), then delete the raw
        messages (together), and those of journal events projected again on a replay. What
        fails stays queued for the next batch (or the next start). `forgotten`: the State's
        forgotten user hashes (a set that only grows)."""
        appended: list[int] = []
        for pm_seq in sorted(self._erase):
            username, time_us, subject, error = self._erase[pm_seq]
            if username and forget.user_hash(username) in forgotten:
                appended.append(pm_seq)  # forgotten since it was held: never counted, just deleted
                continue
            if pm_seq in self._erased:  # appended already, its delete failed: only delete it
                appended.append(pm_seq)
                continue
            event = ev.PmRedacted(ev.from_us(time_us), pm_seq, username, subject, error)
            try:
                await self._journal.append(event, msg_id=f"userstats-pm-{pm_seq}")
            except Exception as exc:  # NATS unavailable: the queue keeps it
                log.warning("PM at seq %d: journal event not appended yet (%s); retrying later", pm_seq, exc)
                break
            appended.append(pm_seq)
            self._erased.add(pm_seq)
        replayed = sorted(self._replayed)
        results: list[BaseException | None] = []
        for i in range(0, len(appended), DELETES_AT_ONCE):  # a flood of deletes times out
            chunk = appended[i : i + DELETES_AT_ONCE]
            results += await asyncio.gather(*(self._delete(s) for s in chunk), return_exceptions=True)
        for i in range(0, len(replayed), DELETES_AT_ONCE):  # most are gone already: no-ops
            chunk = replayed[i : i + DELETES_AT_ONCE]
            done = await asyncio.gather(*(self._delete(s) for s in chunk), return_exceptions=True)
            self._replayed.difference_update(s for s, r in zip(chunk, done, strict=True) if r is None)
        for pm_seq, result in zip(appended, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("raw PM at seq %d not deleted yet (%s); retrying later", pm_seq, result)
                continue
            del self._erase[pm_seq]
            self.pms_erased += 1
            self._metrics.pms_erased.inc()

    async def sweep_raw_pms(self, applied_seq: int) -> bool:
        """Delete the raw PMs at or below the checkpoint (`applied_seq`) that are not queued:
        counted already, but their delete failed and the run that would have retried it was
        killed (the batch with their journal event had removed them from the queue). The
        stream is asked for each raw PM it still holds, normally none. False if it could not
        be asked (retried at the next start of the loop)."""
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
                    await self._delete(seq)
                    self.pms_erased += 1
                    self._metrics.pms_erased.inc()
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
