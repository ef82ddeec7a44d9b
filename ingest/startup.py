"""Ingest's start-up: the database brought to the stream before projecting, and the events
appended at every start.

A database built by another projection version is rebuilt from the stream into a shadow
file and swapped in (replicas keep serving the old snapshot meanwhile). A new database
beside a stream whose retention removed its beginning starts from the newest snapshot
instead of seq 1 (or, without one, from what the stream still holds).
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext, api
from userstats.ingest.db import WriterDatabase, shadow_path
from userstats.ingest.journal import Journal
from userstats.ingest.kvstate import read_channel_state
from userstats.ingest.rebuild import RebuildError
from userstats.ingest.rebuild_shadow import build_shadow
from userstats.shared import apply, schema
from userstats.shared.settings import Settings

log = logging.getLogger(__name__)


async def catch_up(js: JetStreamContext, db: WriterDatabase, settings: Settings, info: api.StreamInfo) -> int:
    """Check the database against the stream's retention and rebuild it when it must be;
    returns the seq its tables are at."""
    u = settings.userstats
    live = db.live
    if u.stream_max_age_seconds and u.snapshot_interval_seconds >= u.stream_max_age_seconds:
        log.warning(
            "stream_max_age_seconds (%g) is not longer than snapshot_interval_seconds (%g): events "
            "may age out before a snapshot covers them, and a rebuild then has no base",
            u.stream_max_age_seconds,
            u.snapshot_interval_seconds,
        )
    cp = apply.read_checkpoint(db.con)
    first = int(info.state.first_seq)
    fresh = cp.seq == 0 and first > 1
    if cp.seq and cp.seq + 1 < first:
        log.error(
            "the stream's retention removed seq %d..%d before they were projected: those events "
            "are lost to the tables (make the retention longer than ingest can be down)",
            cp.seq + 1,
            first - 1,
        )
    if cp.projection_version != schema.PROJECTION_VERSION or fresh:
        if fresh:
            log.warning(
                "database %s is new and the stream starts at seq %d (retention): starting from the "
                "newest snapshot instead of seq 1",
                live,
                first,
            )
        else:
            log.warning(
                "database %s was built by projection version %d, this is %d: rebuilding from the "
                "stream (replicas keep serving the old snapshot meanwhile)",
                live,
                cp.projection_version,
                schema.PROJECTION_VERSION,
            )
        db.close()
        try:
            result = await build_shadow(js, u.stream, shadow_path(live), nats=settings.nats)
        except RebuildError as exc:
            if not fresh:
                raise
            log.error("%s; projecting what the stream still holds, from seq %d", exc, first)
            db.open()
        else:
            db.swap(result.path)
            log.info(
                "rebuild done: %d events, %d dead letters, %.1f s",
                result.events,
                result.dead_letters,
                result.seconds,
            )
    seq = apply.read_checkpoint(db.con).seq
    log.info(
        "database %s at seq %d (projection version %d); stream %s holds %d..%d",
        live,
        seq,
        schema.PROJECTION_VERSION,
        u.stream,
        info.state.first_seq,
        info.state.last_seq,
    )
    return seq


async def append_start_events(js: JetStreamContext, journal: Journal, settings: Settings) -> None:
    """The counting settings (unless the newest settings event says the same), then each configured
    channel's bridge KV state."""
    await journal.sync_settings(settings)
    for ch in settings.channels:
        event = await read_channel_state(js, ch)
        if event is not None:
            seq = await journal.append(event)
            log.info("%s/%s: bridge KV state appended at seq %d", ch.domain, ch.channel, seq)
