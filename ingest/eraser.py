"""Deleting a forgotten user's raw events from the stream (user.forget, README "Forgetting a user").

Two paths. A scan reads the stream from its first sequence up to the forget event, in order
and a bounded buffer at a time, and deletes (by seq) each message that belongs to the user
(`forget.event_names`), logging its progress; its position is kept in the pointer KV bucket
(`forget-scan.<hash>`), so a restarted ingest resumes it. And every event of a forgotten user
that arrives later is ignored by the projection, which hands its seq here to be deleted once
the batch is committed. Nothing else in the stream is touched. JetStream erases a deleted
message's payload on disk (the default of STREAM.MSG.DELETE).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyNotFoundError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue
from userstats.shared import forget, subjects
from userstats.shared.stream import StreamReader

log = logging.getLogger(__name__)

SCAN_KEY_PREFIX = "forget-scan."
PROGRESS_SECONDS = 5.0  # a log line and a saved position at most this often
TAKE = 2_000  # messages taken from the reader at a time (its buffer is bounded too)


class ScanState(msgspec.Struct):
    user_hash: str
    next_seq: int
    to_seq: int
    deleted: int = 0


class Eraser:
    def __init__(self, js: JetStreamContext, stream: str, stream_subjects: list[str]) -> None:
        self._js = js
        self._stream = stream
        self._subjects = stream_subjects
        self._seqs: asyncio.Queue[list[int]] = asyncio.Queue()
        self._scans: asyncio.Queue[ScanState] = asyncio.Queue()
        self.deleted = 0  # messages deleted by this process (scans and later events)
        self.scans_done = 0

    def delete_later(self, seqs: list[int]) -> None:
        """Seqs of a forgotten user's events the projection ignored (committed batch)."""
        if seqs:
            self._seqs.put_nowait(list(seqs))

    async def start_scan(self, user_hash: str, to_seq: int) -> None:
        state = ScanState(user_hash, 1, to_seq)
        try:
            await self._save(state)
        except Exception as exc:  # the scan still runs now; only a restart could not resume it
            log.warning("forget %s: scan position not saved (%s)", user_hash[:12], exc)
        self._scans.put_nowait(state)

    async def run(self, stop: asyncio.Event) -> None:
        """Resume the scans a previous ingest left, then serve both queues until stopped."""
        with contextlib.suppress(Exception):  # no bucket or no keys yet: nothing to resume
            kv = await self._kv()
            for key in await kv.keys():
                if key.startswith(SCAN_KEY_PREFIX):
                    entry = await kv.get(key)
                    if entry.value:
                        state = msgspec.json.decode(entry.value, type=ScanState)
                        log.info(
                            "resuming the forget scan of %s at seq %d", state.user_hash[:12], state.next_seq
                        )
                        self._scans.put_nowait(state)
        while not stop.is_set():
            if not self._seqs.empty():
                seqs = self._seqs.get_nowait()
                done = 0
                try:
                    for seq in seqs:
                        await self._delete(seq)
                        done += 1
                except Exception:  # NATS away: again in a while
                    self._seqs.put_nowait(seqs[done:])
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 5.0)
                continue
            if not self._scans.empty():
                state = self._scans.get_nowait()
                try:
                    await self._scan(state, stop)
                except Exception as exc:  # NATS away: try again from where it got to
                    short = state.user_hash[:12]
                    log.error("forget %s: scan failed at seq %d (%s); retrying", short, state.next_seq, exc)
                    self._scans.put_nowait(state)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 5.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    async def _delete(self, seq: int) -> bool:
        try:
            ok = await self._js.delete_msg(self._stream, seq)
        except (NotFoundError, APIError) as exc:  # already gone (a resumed scan, a replay)
            log.debug("deleting seq %d: %s", seq, exc)
            return False
        except Exception as exc:  # NATS away: the scan retries; a later event's seq is logged
            log.warning("deleting seq %d from the stream failed: %s", seq, exc)
            raise
        if ok:
            self.deleted += 1
        return bool(ok)

    async def _scan(self, state: ScanState, stop: asyncio.Event) -> None:
        info = await self._js.stream_info(self._stream)
        start = max(state.next_seq, int(info.state.first_seq))
        short = state.user_hash[:12]
        if start <= state.to_seq:
            log.info(
                "forget %s: scanning seq %d..%d of %s for the user's events",
                short,
                start,
                state.to_seq,
                self._stream,
            )
            reader = StreamReader(self._js, self._stream, self._subjects, start, max_buffer=20_000)
            await reader.start()
            logged = time.monotonic()
            hashes = {state.user_hash}
            try:
                while state.next_seq <= state.to_seq and not stop.is_set():
                    if not await reader.wait(timeout=2.0):
                        info = await self._js.stream_info(self._stream)
                        if int(info.state.last_seq) < state.next_seq:
                            break  # nothing more to read (the rest was deleted or aged out)
                        continue
                    for item in reader.take(TAKE):
                        if item.seq > state.to_seq:
                            state.next_seq = state.to_seq + 1
                            break
                        names = forget.event_names(item.subject, item.data)
                        if any(forget.user_hash(n) in hashes for n in names) and await self._delete(item.seq):
                            state.deleted += 1
                        state.next_seq = item.seq + 1
                    if time.monotonic() - logged >= PROGRESS_SECONDS:
                        logged = time.monotonic()
                        await self._save(state)
                        log.info(
                            "forget %s: at seq %d of %d, %d event(s) deleted",
                            short,
                            state.next_seq - 1,
                            state.to_seq,
                            state.deleted,
                        )
            finally:
                await reader.stop()
            if stop.is_set() and state.next_seq <= state.to_seq:
                await self._save(state)  # resumed at the next start
                return
        self.scans_done += 1
        log.info(
            "forget %s: stream scanned up to seq %d, %d event(s) deleted", short, state.to_seq, state.deleted
        )
        with contextlib.suppress(Exception):
            await (await self._kv()).delete(SCAN_KEY_PREFIX + state.user_hash)

    async def pending_scans(self) -> int:
        """Scans not finished (queued, running, or left by a previous ingest)."""
        try:
            keys = await (await self._kv()).keys()
        except (NoKeysError, NotFoundError, KeyNotFoundError):
            return 0
        return sum(1 for k in keys if k.startswith(SCAN_KEY_PREFIX))

    async def _kv(self) -> KeyValue:
        return await self._js.key_value(subjects.POINTER_BUCKET)

    async def _save(self, state: ScanState) -> None:
        await (await self._kv()).put(SCAN_KEY_PREFIX + state.user_hash, msgspec.json.encode(state))
