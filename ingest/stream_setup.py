"""Declaring the event stream (idempotently: create, or update a drifted config)."""

from __future__ import annotations

import dataclasses
import logging

from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError
from userstats.shared import replication
from userstats.shared.replication import ReplicationError
from userstats.shared.settings import UserstatsSettings
from userstats.shared.subjects import STREAM_SUBJECTS

log = logging.getLogger(__name__)


def stream_config(s: UserstatsSettings) -> api.StreamConfig:
    rep = replication.for_store(s, "stream")
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
        # journal events carry Nats-Msg-Id; the window dedupes retries (it cannot exceed max_age)
        duplicate_window=min(120.0, s.stream_max_age_seconds) if s.stream_max_age_seconds else 120,
        num_replicas=rep.replicas,
        placement=rep.placement,
    )


async def ensure_stream(js: JetStreamContext, s: UserstatsSettings) -> api.StreamInfo:
    """Create the stream, or update it when its subjects, limits or replication differ from
    ours. Raises ReplicationError when the server refuses the replica count or placement."""
    want = stream_config(s)
    rep = replication.for_store(s, "stream")
    what = f"stream {s.stream}"
    try:
        info = await js.stream_info(s.stream)
    except NotFoundError:
        try:
            info = await js.add_stream(want)
        except APIError as exc:
            raise ReplicationError(replication.explain(exc, what, "stream", rep)) from exc
        log.info("stream %s created (%s), capturing %s", s.stream, rep.describe(), ", ".join(STREAM_SUBJECTS))
        return info
    have = info.config
    drift = (
        sorted(have.subjects or []) != sorted(STREAM_SUBJECTS)
        or have.max_msgs != want.max_msgs
        or have.max_bytes != want.max_bytes
        or float(have.max_age or 0) != float(want.max_age or 0)
    )
    if not drift:
        return await replication.apply(js, info, rep, what, "stream")
    # Our subjects and limits, with its replication where none is configured to change it.
    current = dataclasses.replace(want, num_replicas=have.num_replicas, placement=have.placement)
    try:
        info = await js.update_stream(replication.with_replication(current, rep))
    except APIError as exc:
        if not replication.differs(have, rep):
            raise
        raise ReplicationError(
            replication.explain(exc, what, "stream", rep, int(have.num_replicas or 1))
        ) from exc
    log.info(
        "stream %s updated to the configured subjects, limits and replication (%s)", s.stream, rep.describe()
    )
    return info
