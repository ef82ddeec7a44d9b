"""Appending ingest's own events to the log (userstats.journal.<kind>).

Everything the projection needs besides bridge events goes through here, so that a
replay sees exactly what the live projection saw.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shared import events as ev
from shared import subjects
from shared.settings import Settings

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, js: JetStreamContext, stream: str) -> None:
        self._js = js
        self._stream = stream

    async def append(self, event: ev.JournalEvent, msg_id: str | None = None) -> int:
        """Publish and wait for the stream's ack; returns the event's stream sequence."""
        return (await self.append_once(event, msg_id))[0]

    async def append_once(self, event: ev.JournalEvent, msg_id: str | None) -> tuple[int, bool]:
        """Like append; also says whether the stream dropped it as a duplicate of `msg_id`."""
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        ack = await self._js.publish(
            subjects.journal_subject(ev.journal_kind(event)),
            ev.encode(event),
            stream=self._stream,
            headers=headers,
        )
        return int(ack.seq), bool(ack.duplicate)

    async def sync_settings(self, settings: Settings) -> int | None:
        """Append a settings event unless the newest one in the stream already says the same."""
        wanted = ev.Settings(
            timestamp=datetime.now(UTC),
            trigger_phrases=sorted({p.lower() for p in settings.kudos.default_phrases if p}),
            count_shadow_muted=settings.userstats.count_shadow_muted,
            population_interval_seconds=settings.snapshots.interval_seconds,
        )
        try:
            last = await self._js.get_last_msg(self._stream, subjects.journal_subject("settings"))
            prev = ev.JOURNAL_DECODER.decode(last.data or b"")
            if (
                isinstance(prev, ev.Settings)
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
