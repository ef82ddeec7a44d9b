"""Request and reply types of the query API (spec 4.2) and the error envelope.

Requests: a JSON object with `command`, optional `service`, optional `min_seq`, and the
command's parameters flat at the top level. Each command's parameters decode into a
Struct below; replies are Structs too, encoded in the spec's key order.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

SERVICE = "userstats"

MAX_LIMIT = 1000
MAX_HOURS = 24 * 366
MAX_DAYS = 3660
MAX_NAME = 200

Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Limit = int  # validated in `clamp_limit`: negative means "as many as allowed"
Hours = Annotated[float, msgspec.Meta(ge=0, le=MAX_HOURS)]
Days = Annotated[float, msgspec.Meta(ge=0, le=MAX_DAYS)]


class Params(msgspec.Struct, kw_only=True, frozen=True):
    """Base of every command's parameters; `domain` defaults to the first configured one."""


class NoParams(Params, frozen=True):
    pass


class UserParams(Params, frozen=True):
    username: Name
    channel: Name | None = None
    domain: Name | None = None


class UserMessagesParams(UserParams, frozen=True):
    # kryten-shell sends it; userstats (like 0.7.1) stores no message texts, so the reply has
    # the counts only and the limit has nothing to bound
    limit: Limit = 50


class UserDomainParams(Params, frozen=True):
    username: Name
    domain: Name | None = None


class ChannelParams(Params, frozen=True):
    channel: Name
    domain: Name | None = None


class TopUsersParams(ChannelParams, frozen=True):
    limit: Limit = 10


class PopulationParams(ChannelParams, frozen=True):
    hours: Hours = 24


class MediaHistoryParams(ChannelParams, frozen=True):
    limit: Limit = 50


class LeaderboardMessagesParams(Params, frozen=True):
    channel: Name | None = None  # deliberately different: optional, all channels when absent
    domain: Name | None = None
    limit: Limit = 10


class LeaderboardAllParams(LeaderboardMessagesParams, frozen=True):
    """leaderboard.all (kryten-shell): the three leaderboards in one reply."""


class LeaderboardParams(Params, frozen=True):
    domain: Name | None = None
    limit: Limit = 10


class WatermarksParams(ChannelParams, frozen=True):
    days: Days | None = None


class MovieVotesParams(ChannelParams, frozen=True):
    media_title: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class TimeseriesParams(ChannelParams, frozen=True):
    start_time: Name | None = None
    end_time: Name | None = None


class TimeseriesKudosParams(Params, frozen=True):
    channel: Name | None = None
    domain: Name | None = None
    start_time: Name | None = None
    end_time: Name | None = None


class AllStatsLimits(msgspec.Struct, kw_only=True, frozen=True):
    top_users: Limit = 20
    media_history: Limit = 15
    leaderboards: Limit = 10


class AllStatsParams(Params, frozen=True):
    channel: Name | None = None
    domain: Name | None = None
    limits: AllStatsLimits = msgspec.field(default_factory=AllStatsLimits)


class ChannelListParams(Params, frozen=True):
    domain: Name | None = None  # every domain when absent


class AliasUserParams(Params, frozen=True):
    username: Name


class AliasPairParams(Params, frozen=True):
    username: Name
    alias: Name


class ForgetParams(Params, frozen=True):
    username: Name


class AliasUpdateParams(Params, frozen=True):
    old_alias: Name
    new_alias: Name


class AliasFindParams(Params, frozen=True):
    alias: Name


# --- reply rows (spec 4.2 "Row shapes") ------------------------------------------


class Row(msgspec.Struct, frozen=True):
    pass


class TopRow(Row, frozen=True):
    username: str
    count: int


class EmoteRow(Row, frozen=True):
    emote: str
    count: int


class PhraseRow(Row, frozen=True):
    phrase: str
    count: int


class ChannelCountRow(Row, frozen=True):
    channel: str
    count: int


class ActivityRow(Row, frozen=True):
    total_time_seconds: int
    not_afk_time_seconds: int


class ChannelActivityRow(Row, frozen=True):
    channel: str
    total_time_seconds: int
    not_afk_time_seconds: int


class SnapshotRow(Row, frozen=True):
    timestamp: str
    connected_count: int
    chat_count: int


class ChannelRow(Row, frozen=True):
    domain: str
    channel: str
    messages: int
    current: SnapshotRow | None


class MarkRow(Row, frozen=True):
    timestamp: str
    total_users: int
    chat_users: int


class MediaRow(Row, frozen=True):
    timestamp: str
    media_title: str
    media_type: str | None
    media_id: str | None


class VoteRow(Row, frozen=True):
    media_title: str
    media_type: str | None
    media_id: str | None
    upvotes: int
    downvotes: int
    total_votes: int
    score: int
    last_vote: str


class VoteSummary(Row, frozen=True):
    """`channel.movie_votes` with a `media_title`: the row without `last_vote` (spec)."""

    media_title: str
    media_type: str | None
    media_id: str | None
    upvotes: int
    downvotes: int
    total_votes: int
    score: int


# --- envelopes -----------------------------------------------------------------------


class Reply(msgspec.Struct, frozen=True, omit_defaults=True):
    service: str
    command: str
    success: bool
    data: Any
    as_of_seq: int
    note: str | None = None  # why an answer is empty, e.g. the channel is on another domain


class ErrorReply(msgspec.Struct, frozen=True):
    service: str
    command: str
    success: bool
    error: str
    as_of_seq: int


class EnvelopeErrorReply(msgspec.Struct, frozen=True):
    """Errors before a command is known: no `command` key (spec 4.2)."""

    service: str
    success: bool
    error: str
    as_of_seq: int


class RequestError(Exception):
    """Bad input: becomes an error envelope with this message."""

    def __init__(self, message: str, command: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.command = command


def clamp_limit(value: int) -> int:
    """Negative means as many as allowed (0.7.1: unlimited); above MAX_LIMIT is capped."""
    if value < 0 or value > MAX_LIMIT:
        return MAX_LIMIT
    return value


_ENCODER = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    return _ENCODER.encode(obj)


def ok(command: str, data: Any, seq: int, note: str | None = None) -> bytes:
    return encode(Reply(SERVICE, command, True, data, seq, note))


def error(command: str | None, message: str, seq: int) -> bytes:
    if command is None:
        return encode(EnvelopeErrorReply(SERVICE, False, message, seq))
    return encode(ErrorReply(SERVICE, command, False, message, seq))
