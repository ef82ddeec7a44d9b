"""Every command, declared once: its name, parameter Struct, reply Struct and flags.

Validation (shared/requests.py), the seed subjects, dispatch (query/handlers.py) and reply
caching (query/answers.py, query/live.py), the HTTP API and its OpenAPI document, the
generated API reference (userstats/docs.py) and the client's reply decoders all read this
table. A read command's
function is `<name with "." as "_">` in its family's module of userstats.query.reads
(user.stats -> reads/users.py's user_stats, see reads.read_function); query/answers.py checks
at import that every read has one. So a new read command is one line here, one function
there, a test, and the two generated files (`python -m userstats.docs`, `userstats.clientgen`).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from userstats.shared import messages as m
from userstats.shared import replies as r

# How a read's reply may be cached: "tables" while no batch is applied, "user" while no batch
# touches that user's rows, "live" never (it carries uptime or counters of the process).
Cache = Literal["tables", "user", "live"]


class Command(NamedTuple):
    name: str
    params: type[m.Params]
    reply: Any  # the type of the reply's `data`
    seed: bool = False  # also on the seed's per-subject API (userstats.<domain>.<name>)
    write: bool = False  # forwarded to ingest, the only writer
    cache: Cache = "tables"
    # Answered from the tables: not before a snapshot is loaded, and after `min_seq` is applied.
    # system.ping and system.health answer at once, whatever the replica's state.
    tables: bool = True


COMMANDS: tuple[Command, ...] = (
    Command("user.stats", m.UserParams, r.UserStats, seed=True, cache="user"),
    Command("user.profile", m.UserParams, r.UserProfile, cache="user"),
    Command("user.messages", m.UserMessagesParams, r.UserMessages, seed=True, cache="user"),
    Command("user.activity", m.UserParams, r.UserActivity, seed=True, cache="user"),
    Command("user.kudos", m.UserDomainParams, r.UserKudos, seed=True, cache="user"),
    Command("stats.global", m.ChannelParams, r.StatsGlobal),
    Command("channel.top_users", m.TopUsersParams, r.ChannelTopUsers, seed=True),
    Command("channel.population", m.PopulationParams, r.ChannelPopulation, seed=True),
    Command("channel.media_history", m.MediaHistoryParams, r.ChannelMediaHistory, seed=True),
    Command("channel.watermarks", m.WatermarksParams, r.Watermarks, seed=True),
    Command("channel.movie_votes", m.MovieVotesParams, list[m.VoteRow] | m.VoteSummary | None, seed=True),
    Command("channel.all_stats", m.AllStatsParams, r.AllStats, cache="live"),
    Command("channel.list", m.ChannelListParams, r.ChannelList),
    Command("leaderboard.messages", m.LeaderboardMessagesParams, r.MessagesLeaderboard, seed=True),
    Command("leaderboard.kudos", m.LeaderboardParams, r.KudosLeaderboard, seed=True),
    Command("leaderboard.emotes", m.LeaderboardParams, r.EmotesLeaderboard, seed=True),
    Command("leaderboard.all", m.LeaderboardAllParams, r.LeaderboardAll),
    Command("timeseries.messages", m.TimeseriesParams, r.MessagesSeries, seed=True),
    Command("timeseries.kudos", m.TimeseriesKudosParams, r.KudosSeries, seed=True),
    Command("system.ping", m.NoParams, r.Ping, cache="live", tables=False),
    Command("system.health", m.NoParams, r.Health, seed=True, cache="live", tables=False),
    Command("system.stats", m.NoParams, r.SystemStats, seed=True, cache="live"),
    Command("alias.list", m.NoParams, r.AliasList),
    Command("alias.get", m.AliasUserParams, r.AliasGet),
    Command("alias.add", m.AliasPairParams, r.AliasAdded, write=True),
    Command("alias.delete", m.AliasPairParams, r.AliasDeleted, write=True),
    Command("alias.update", m.AliasUpdateParams, r.AliasUpdated, write=True),
    Command("alias.find", m.AliasFindParams, r.AliasFound),
    Command("user.forget", m.ForgetParams, r.UserForgotten, write=True),
)
BY_NAME: dict[str, Command] = {c.name: c for c in COMMANDS}

# Views of the table for the modules that ask one question of it.
COMMAND_PARAMS: dict[str, type[m.Params]] = {c.name: c.params for c in COMMANDS}
REPLY_TYPES: dict[str, Any] = {c.name: c.reply for c in COMMANDS}
WRITE_COMMANDS = frozenset(c.name for c in COMMANDS if c.write)
SEED_COMMANDS = frozenset(c.name for c in COMMANDS if c.seed)
USER_COMMANDS = frozenset(c.name for c in COMMANDS if c.cache == "user")
# Reads answered from the tables through their `reads` function (the "live" ones are built
# by query/live.py's LIVE handlers, writes go to ingest).
TABLE_READS = tuple(c.name for c in COMMANDS if not c.write and c.cache != "live")
