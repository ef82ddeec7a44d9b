"""Appending ingest's own events to the log (userstats.journal.<kind>).

Everything the projection needs besides bridge events goes through here, so that a
replay sees exactly what the live projection saw.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError, NotFoundError, ServiceUnavailableError
from userstats.shared import events as ev
from userstats.shared import subjects
from userstats.shared.settings import Settings

log = logging.getLogger(__name__)

# How long an append keeps trying while the stream has no leader (a cluster election takes
# 4 to 9 s). Well inside the stream's 120 s duplicate window, so every retry of one append
# carries the same Nats-Msg-Id and the stream stores it once, even when an attempt that
# timed out had in fact been stored.
RETRY_SECONDS = 30.0
RETRYABLE = (NatsTimeoutError, NoRespondersError, NoStreamResponseError, ServiceUnavailableError)


class JournalError(Exception):
    """An event could not be appended: the stream did not acknowledge it in time."""


class Journal:
    def __init__(self, js: JetStreamContext, stream: str) -> None:
        self._js = js
        self._stream = stream

    async def append(self, event: ev.JournalEvent, msg_id: str | None = None) -> int:
        """Publish and wait for the stream's ack; returns the event's stream sequence."""
        return (await self.append_once(event, msg_id))[0]

    async def append_once(
        self, event: ev.JournalEvent, msg_id: str | None, retry_seconds: float = RETRY_SECONDS
    ) -> tuple[int, bool]:
        """Like append; also says whether the stream dropped it as a duplicate of `msg_id`
        published before this call (a duplicate of one of this call's own attempts is not)."""
        kind = ev.journal_kind(event)
        headers = {"Nats-Msg-Id": msg_id or f"userstats-{kind}-{uuid.uuid4().hex}"}
        data = ev.encode(event)
        deadline = time.monotonic() + retry_seconds
        delay, attempts = 0.1, 0
        while True:
            attempts += 1
            try:
                ack = await self._js.publish(
                    subjects.journal_subject(kind), data, stream=self._stream, headers=headers
                )
            except RETRYABLE as exc:
                if time.monotonic() + delay > deadline:
                    raise JournalError(
                        f"{kind} event not acknowledged by stream {self._stream} after {attempts} "
                        f"attempt(s) in {retry_seconds:g} s ({exc})"
                    ) from exc
                log.warning("appending a %s event: %s; retrying (the stream stores it once)", kind, exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
                continue
            if attempts > 1:
                log.info("%s event appended at seq %d after %d attempts", kind, ack.seq, attempts)
            return int(ack.seq), bool(ack.duplicate) and attempts == 1

    async def sync_settings(self, settings: Settings) -> int | None:
        """Append a settings event unless the newest one in the stream already says the same."""
        wanted = ev.SettingsChanged(
            timestamp=datetime.now(UTC),
            trigger_phrases=sorted({p.lower() for p in settings.kudos.default_phrases if p}),
            count_shadow_muted=settings.userstats.count_shadow_muted,
            population_interval_seconds=settings.snapshots.interval_seconds,
        )
        try:
            last = await self._js.get_last_msg(self._stream, subjects.journal_subject("settings"))
            prev = ev.JOURNAL_DECODER.decode(last.data or b"")
            if (
                isinstance(prev, ev.SettingsChanged)
                and sorted(prev.trigger_phrases) == wanted.trigger_phrases
                and prev.count_shadow_muted == wanted.count_shadow_muted
                and prev.population_interval_seconds == wanted.population_interval_seconds
            ):
                return None
        except NotFoundError:
            pass
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("newest settings event is unreadable (%s); appending a new one", exc)
        seq = await self.append(wanted)
        log.info(
            "settings event appended at seq %d: phrases=%s, count_shadow_muted=%s, population every %d s",
            seq,
            ",".join(wanted.trigger_phrases),
            wanted.count_shadow_muted,
            wanted.population_interval_seconds,
        )
        return seq

    async def run_ticks(self, stop: asyncio.Event, interval: float) -> None:
        """Record the passage of time so quiet channels still get population rows."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
                return
            except TimeoutError:
                pass
            try:
                await self.append(ev.Tick(timestamp=datetime.now(UTC)))
            except Exception as exc:  # NATS down: the next tick will do
                log.warning("tick not appended: %s", exc)
