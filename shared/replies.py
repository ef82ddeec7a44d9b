"""The `data` of every command's reply, as msgspec Structs: the contract the typed client
decodes with, the API reference is generated from, and the tests hold the server to
(every reply of the integration tests must decode strictly into its Struct). Which command
answers with which is declared in shared/commands.py.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType
from userstats.shared.messages import (
    ActivityRow,
    ChannelActivityRow,
    ChannelCountRow,
    ChannelRow,
    EmoteRow,
    MarkRow,
    MediaRow,
    PhraseRow,
    SnapshotRow,
    TopRow,
    VoteRow,
)


class Data(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    pass


class UserStats(Data, frozen=True):
    username: str
    messages: int
    all_messages: list[ChannelCountRow]
    pms: int
    kudos_plusplus: int
    kudos_phrases: list[PhraseRow]
    emotes: list[EmoteRow]
    activity: ActivityRow | UnsetType | None = UNSET  # with `channel`
    all_activity: list[ChannelActivityRow] | UnsetType = UNSET  # without `channel`
    # beyond 0.7.1, for kryten-shell (its users view and `stats` command read them)
    aliases: list[str] = []
    first_seen: str | None = None
    last_seen: str | None = None


class ProfileKudos(Data, frozen=True):
    plusplus: int
    phrases: list[PhraseRow]


class UserProfile(Data, frozen=True):
    username: str
    messages: int
    all_messages: list[ChannelCountRow]
    pms: int
    kudos: ProfileKudos
    emotes: list[EmoteRow]
    activity: ActivityRow | list[ChannelActivityRow] | None


class UserMessages(Data, frozen=True):
    username: str
    channel: str | UnsetType = UNSET
    message_count: int | UnsetType = UNSET  # with `channel`
    channels: list[ChannelCountRow] | UnsetType = UNSET  # without `channel`


class UserActivity(Data, frozen=True):
    username: str
    channel: str | UnsetType = UNSET
    activity: ActivityRow | UnsetType | None = UNSET  # with `channel`
    all_activity: list[ChannelActivityRow] | UnsetType = UNSET  # without `channel`
    first_seen: str | None = None  # beyond 0.7.1, for kryten-shell's `activity` command
    last_seen: str | None = None


class UserKudos(Data, frozen=True):
    username: str
    plusplus: int
    phrases: list[PhraseRow]
    total_received: int = 0  # beyond 0.7.1: plusplus plus every phrase (kryten-shell reads it)


class Watermarks(Data, frozen=True):
    high: MarkRow | None
    low: MarkRow | None


class Population(Data, frozen=True):
    current: SnapshotRow | None
    history: list[SnapshotRow]


class StatsGlobal(Data, frozen=True):
    channel: str
    domain: str
    top_users: list[TopRow]
    watermarks: Watermarks
    population: Population


class ChannelTopUsers(Data, frozen=True):
    channel: str
    top_users: list[TopRow]


class ChannelPopulation(Data, frozen=True):
    channel: str
    current: SnapshotRow | None
    history: list[SnapshotRow]
    # beyond 0.7.1, for kryten-shell's `population` command: over `history`'s window
    peak: int = 0
    average: float = 0.0


class ChannelMediaHistory(Data, frozen=True):
    channel: str
    history: list[MediaRow]


class MessagesLeaderboard(Data, frozen=True):
    channel: str | None
    leaderboard: list[TopRow]


class LeaderboardAll(Data, frozen=True):
    """leaderboard.all: not in 0.7.1; kryten-shell asks for it."""

    channel: str | None
    messages: list[TopRow]
    kudos: list[TopRow]
    emotes: list[EmoteRow]


class KudosLeaderboard(Data, frozen=True):
    leaderboard: list[TopRow]


class EmotesLeaderboard(Data, frozen=True):
    leaderboard: list[EmoteRow]


class MessagesHour(Data, frozen=True):
    hour: str
    avg_active_users: float | None
    messages: int


class MessagesSeries(Data, frozen=True):
    channel: str
    data: list[MessagesHour]


class KudosHour(Data, frozen=True):
    hour: str
    kudos: int


class KudosSeries(Data, frozen=True):
    channel: str | None
    data: list[KudosHour]


class Ping(Data, frozen=True):
    pong: bool
    service: str
    version: str
    uptime_seconds: float
    timestamp: str
    metrics_endpoint: str


class Health(Data, frozen=True):
    service: str
    status: str
    uptime_seconds: float
    database_connected: bool
    nats_connected: bool
    following: bool | UnsetType = UNSET
    snapshot_seq: int | UnsetType | None = UNSET
    problem: str | UnsetType | None = UNSET


class SystemStats(Data, frozen=True):
    """`total_kudos`: ++ kudos only, as 0.7.1; the metric userstats_total_kudos adds phrase kudos."""

    total_users: int
    total_messages: int
    total_pms: int
    total_kudos: int
    total_emotes: int
    total_media_changes: int
    events_processed: int
    commands_processed: int
    active_sessions: int


class AllStatsSystem(Data, frozen=True):
    health: Health
    stats: SystemStats


class AllStatsLeaderboards(Data, frozen=True):
    messages: list[TopRow]
    kudos: list[TopRow]
    emotes: list[EmoteRow]


class AllStatsPopulation(Data, frozen=True):
    current: SnapshotRow | None
    history_24h: list[SnapshotRow]


class AllStatsChannel(Data, frozen=True):
    top_users: list[TopRow]
    population: AllStatsPopulation
    watermarks: Watermarks
    media_history: list[MediaRow]
    movie_votes: list[VoteRow]


class AllStats(Data, frozen=True):
    domain: str
    system: AllStatsSystem
    leaderboards: AllStatsLeaderboards
    channel: AllStatsChannel


class ChannelList(Data, frozen=True):
    """channel.list: not in 0.7.1; every channel the stream has seen, busiest first."""

    channels: list[ChannelRow]


class AliasList(Data, frozen=True):
    aliases: dict[str, list[str]]
    total_users: int
    total_aliases: int


class AliasGet(Data, frozen=True):
    username: str
    aliases: list[str]
    count: int


class AliasAdded(Data, frozen=True):
    username: str
    alias: str
    added: bool
    message: str


class AliasDeleted(Data, frozen=True):
    username: str
    alias: str
    deleted: bool
    message: str


class AliasUpdated(Data, frozen=True):
    old_alias: str
    new_alias: str
    updated: bool
    message: str


class UserForgotten(Data, frozen=True):
    """user.forget: the user's rows are gone and the user is no longer counted (README)."""

    username: str
    forgotten: bool
    known: bool  # the tables had the user (or had already forgotten them)
    already_forgotten: bool
    user_hash: str  # what the journal and the forgotten_users table keep instead of the name
    message: str


class AliasFound(Data, frozen=True):
    alias: str
    username: str | None
    found: bool
