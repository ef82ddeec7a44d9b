"""Declaring the event stream (idempotently: create, or update a drifted config)."""

from __future__ import annotations

import dataclasses
import logging

from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError
from userstats.shared import replication, subjects
from userstats.shared.projection import CAPTURED_SUBJECTS
from userstats.shared.replication import ReplicationError
from userstats.shared.settings import UserstatsSettings

log = logging.getLogger(__name__)


def captured(s: UserstatsSettings) -> list[str]:
    """The stream's subjects: what the projection uses, or every bridge event (setting)."""
    return list(CAPTURED_SUBJECTS if s.stream_capture == "projected" else subjects.STREAM_SUBJECTS)


def stream_config(s: UserstatsSettings) -> api.StreamConfig:
    rep = replication.for_store(s, "stream")
    return api.StreamConfig(
        name=s.stream,
        description="userstats: the kryten bridge events it projects, and userstats journal events",
        subjects=captured(s),
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        max_msgs=s.stream_max_msgs,
        max_bytes=s.stream_max_bytes,
        max_age=s.stream_max_age_seconds,  # 0: no age limit
        compression=api.StoreCompression.S2,  # nats-server 2.10+; JSON frames shrink ~3x
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
        log.info("stream %s created (%s), capturing %s", s.stream, rep.describe(), ", ".join(captured(s)))
        return info
    have = info.config
    drift = (
        sorted(have.subjects or []) != sorted(captured(s))
        or have.max_msgs != want.max_msgs
        or have.max_bytes != want.max_bytes
        or float(have.max_age or 0) != float(want.max_age or 0)
        or (have.compression or api.StoreCompression.NONE) != want.compression
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
    if sorted(have.subjects or []) != sorted(captured(s)):
        # Stored messages of subjects no longer captured stay until the limits remove them
        # (README, "What is kept"); the projection skips them on replay as before.
        log.info(
            "stream %s now captures %s (was %s)",
            s.stream,
            ", ".join(captured(s)),
            ", ".join(have.subjects or []),
        )
    log.info(
        "stream %s updated to the configured subjects, limits, compression and replication (%s)",
        s.stream,
        rep.describe(),
    )
    return info
