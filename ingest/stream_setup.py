"""Declaring the event stream (idempotently: create, or update a drifted config)."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from shared import subjects
from shared.settings import UserstatsSettings

log = logging.getLogger(__name__)

STREAM_SUBJECTS = [subjects.EVENTS_WILDCARD, subjects.JOURNAL_WILDCARD]


def stream_config(s: UserstatsSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=s.stream,
        description="userstats: kryten bridge events and userstats journal events",
        subjects=STREAM_SUBJECTS,
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        max_msgs=s.stream_max_msgs,
        max_bytes=s.stream_max_bytes,
        max_age=s.stream_max_age_seconds,  # 0: no age limit
        duplicate_window=120,  # journal events carry Nats-Msg-Id; the window dedupes retries
        num_replicas=1,
    )


async def ensure_stream(js: JetStreamContext, s: UserstatsSettings) -> api.StreamInfo:
    """Create the stream, or update it when its subjects or limits differ from ours."""
    want = stream_config(s)
    try:
        info = await js.stream_info(s.stream)
    except NotFoundError:
        info = await js.add_stream(want)
        log.info("stream %s created, capturing %s", s.stream, ", ".join(STREAM_SUBJECTS))
        return info
    have = info.config
    drift = (
        sorted(have.subjects or []) != sorted(STREAM_SUBJECTS)
        or have.max_msgs != want.max_msgs
        or have.max_bytes != want.max_bytes
        or float(have.max_age or 0) != float(want.max_age or 0)
    )
    if drift:
        info = await js.update_stream(want)
        log.info("stream %s updated to the configured subjects and limits", s.stream)
    return info
