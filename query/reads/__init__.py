"""Read-only queries behind each command, on a replica's private DuckDB copy, by reply family.

Each read takes the Scope and the command's parameter Struct and returns the command's reply
Struct of shared/replies.py, so mypy holds the server to the contract the client decodes with.
A command's function is found by its name in its family's module (`read_function`), so a new
read command is one declaration in shared/commands.py and one function in that module.
"""

from types import ModuleType
from typing import Any

from userstats.query.reads import channels, leaderboards, overview, timeseries, users
from userstats.query.reads.channels import (
    channel_list,
    channel_media_history,
    channel_movie_votes,
    channel_population,
    channel_top_users,
    channel_watermarks,
    current_snapshot,
    media_history,
    movie_votes,
    snapshot_rows,
    stats_global,
    top_users,
    watermarks,
)
from userstats.query.reads.leaderboards import (
    emote_leaderboard,
    kudos_leaderboard,
    leaderboard_all,
    leaderboard_emotes,
    leaderboard_kudos,
    leaderboard_messages,
)
from userstats.query.reads.overview import AllStatsTables, all_stats_tables, system_stats
from userstats.query.reads.scope import Scope, as_of_minus, busiest_channel, channel_note, domain_of, iso
from userstats.query.reads.system import dashboard, totals
from userstats.query.reads.timeseries import parse_time, timeseries_kudos, timeseries_messages
from userstats.query.reads.users import (
    SOURCE_READS,
    SqlUsers,
    UserSource,
    alias_find,
    alias_get,
    alias_list,
    user_activity,
    user_kudos,
    user_messages,
    user_profile,
    user_stats,
)

# The module of each command family (the part of the name before the dot).
FAMILIES: dict[str, ModuleType] = {
    "user": users,
    "alias": users,
    "channel": channels,
    "stats": channels,
    "leaderboard": leaderboards,
    "timeseries": timeseries,
    "system": overview,
}


def read_function(command: str) -> Any:
    """The read behind a command: `<family>.<name>` is `<family's module>.<family>_<name>`
    (user.stats -> users.user_stats). KeyError or AttributeError when there is none."""
    family = command.partition(".")[0]
    return getattr(FAMILIES[family], command.replace(".", "_"))


__all__ = [
    "FAMILIES",
    "SOURCE_READS",
    "AllStatsTables",
    "Scope",
    "SqlUsers",
    "UserSource",
    "alias_find",
    "alias_get",
    "alias_list",
    "all_stats_tables",
    "as_of_minus",
    "busiest_channel",
    "channel_list",
    "channel_media_history",
    "channel_movie_votes",
    "channel_note",
    "channel_population",
    "channel_top_users",
    "channel_watermarks",
    "current_snapshot",
    "dashboard",
    "domain_of",
    "emote_leaderboard",
    "iso",
    "kudos_leaderboard",
    "leaderboard_all",
    "leaderboard_emotes",
    "leaderboard_kudos",
    "leaderboard_messages",
    "media_history",
    "movie_votes",
    "parse_time",
    "read_function",
    "snapshot_rows",
    "stats_global",
    "system_stats",
    "timeseries_kudos",
    "timeseries_messages",
    "top_users",
    "totals",
    "user_activity",
    "user_kudos",
    "user_messages",
    "user_profile",
    "user_stats",
    "watermarks",
]
