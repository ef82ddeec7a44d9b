"""Reading the bridge's KV buckets for a channel at start-up (spec 2) into a journal event."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from userstats.shared import events as ev
from userstats.shared.settings import ChannelSettings
from userstats.shared.subjects import kv_bucket

log = logging.getLogger(__name__)


async def _get(js: JetStreamContext, bucket: str, key: str) -> bytes | None:
    try:
        kv = await js.key_value(bucket)
        entry = await kv.get(key)
    except (BucketNotFoundError, KeyNotFoundError, NotFoundError):
        return None
    value: bytes | None = entry.value
    return value


def _emote_names(data: bytes) -> list[str] | None:
    items: Any = msgspec.json.decode(data)
    if not isinstance(items, list):
        return None
    return [e["name"] for e in items if isinstance(e, dict) and isinstance(e.get("name"), str)]


async def read_channel_state(js: JetStreamContext, ch: ChannelSettings) -> ev.KvState | None:
    """The channel's users, emotes and current media as the bridge stored them, if any."""
    users = emotes = media = None
    raw = await _get(js, kv_bucket(ch.channel, "userlist"), "users")
    if raw is not None:
        try:
            users = ev.USERLIST_DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("%s: KV userlist unreadable, skipped: %s", ch.channel, exc)
    raw = await _get(js, kv_bucket(ch.channel, "emotes"), "list")
    if raw is not None:
        try:
            emotes = _emote_names(raw)
        except msgspec.DecodeError as exc:
            log.warning("%s: KV emotes unreadable, skipped: %s", ch.channel, exc)
    raw = await _get(js, kv_bucket(ch.channel, "playlist"), "current")
    if raw is not None:
        try:
            m = ev.MEDIA_DECODER.decode(raw)
            media = ev.KvMedia(title=m.title or "", type=m.type or "", id=m.media_id())
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("%s: KV current media unreadable, skipped: %s", ch.channel, exc)
    if users is None and emotes is None and media is None:
        log.info("%s/%s: no bridge KV state found", ch.domain, ch.channel)
        return None
    return ev.KvState(
        timestamp=datetime.now(UTC),
        domain=ch.domain,
        channel=ch.channel,
        users=users,
        emotes=emotes,
        current_media=media,
    )
