"""One typed key per projection table, in the order of the table's key columns (schema.py).

The column orders are mixed: statistics tables put the channel first (counters, votes,
population), projection-state tables the domain first (sessions, emotes, clock, parts).
A key is a NamedTuple, so it is still the plain tuple that apply.py unpacks into its key
columns and that readers may index, while the projection names each part. KEY_TYPES maps
every table to its key type; a unit test holds the fields equal to the key columns.
"""

from __future__ import annotations

from typing import NamedTuple

from userstats.shared import schema


class UserKey(NamedTuple):
    username: str


class CounterKey(NamedTuple):
    """One additive statistic; unused parts are '' or 0 (schema.COUNTERS)."""

    kind: str
    username: str
    channel: str
    domain: str
    item: str
    bucket: int


class MediaChangeKey(NamedTuple):
    seq: int


class VoteKey(NamedTuple):
    channel: str
    domain: str
    media_title: str
    username: str


class PopulationKey(NamedTuple):
    channel: str
    domain: str
    timestamp: int  # epoch microseconds


class AliasKey(NamedTuple):
    username: str
    alias: str


class PhraseKey(NamedTuple):
    phrase: str


class ChannelKey(NamedTuple):
    """A channel as the projection State and the per-channel state tables key it:
    current_media, recent_chat, channel_clock."""

    domain: str
    channel: str


class ChannelEmoteKey(NamedTuple):
    domain: str
    channel: str
    emote: str


class SessionKey(NamedTuple):
    domain: str
    channel: str
    username: str


class SettingKey(NamedTuple):
    name: str


class ChannelPartKey(NamedTuple):
    domain: str
    channel: str
    part: str


class BaselineKey(NamedTuple):
    key: str  # source, kind, username, channel, domain, item joined by schema.BASELINE_SEP


class ForgottenKey(NamedTuple):
    user_hash: str


class PmEraseKey(NamedTuple):
    seq: int  # the raw PM's stream seq


class DeadLetterKey(NamedTuple):
    seq: int


KEY_TYPES: dict[str, type[tuple[object, ...]]] = {
    schema.USERS.name: UserKey,
    schema.COUNTERS.name: CounterKey,
    schema.MEDIA_CHANGES.name: MediaChangeKey,
    schema.MOVIE_VOTES.name: VoteKey,
    schema.POPULATION_SNAPSHOTS.name: PopulationKey,
    schema.USER_ALIASES.name: AliasKey,
    schema.TRIGGER_PHRASES.name: PhraseKey,
    schema.CHANNEL_EMOTES.name: ChannelEmoteKey,
    schema.CURRENT_MEDIA.name: ChannelKey,
    schema.OPEN_SESSIONS.name: SessionKey,
    schema.RECENT_CHAT.name: ChannelKey,
    schema.CHANNEL_CLOCK.name: ChannelKey,
    schema.PROJECTION_SETTINGS.name: SettingKey,
    schema.CHANNEL_PARTS.name: ChannelPartKey,
    schema.IMPORT_BASELINES.name: BaselineKey,
    schema.FORGOTTEN_USERS.name: ForgottenKey,
    schema.PM_ERASE_QUEUE.name: PmEraseKey,
    schema.DEAD_LETTERS.name: DeadLetterKey,
}


def key_fields(key_type: type[tuple[object, ...]]) -> tuple[str, ...]:
    """The field names of a key type, in order."""
    fields: tuple[str, ...] = getattr(key_type, "_fields")  # noqa: B009 (tuple's type has no _fields)
    return fields
