"""Table definitions of the projection, and the projection version.

Every table is keyed; a batch changes a table only through keyed upserts (with a merge
rule per value column) and keyed deletes, so `apply.py` can be generic. The snapshot
copies these tables without indexes; a replica recreates them from `ddl()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Bump whenever a rule in shared/projection.py or shared/detectors.py changes what the
# tables would contain for the same log. Ingest rebuilds on mismatch; replicas refuse to
# follow a snapshot made by another version.
PROJECTION_VERSION = 1

Merge = Literal["add", "min", "max", "set"]


@dataclass(frozen=True)
class Column:
    name: str
    sqltype: str  # VARCHAR, BIGINT, BOOLEAN, TIMESTAMP (fed as epoch microseconds), BLOB
    merge: Merge = "set"


@dataclass(frozen=True)
class TableSpec:
    name: str
    keys: tuple[Column, ...]
    values: tuple[Column, ...]

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.keys + self.values


def _c(name: str, sqltype: str = "VARCHAR", merge: Merge = "set") -> Column:
    return Column(name, sqltype, merge)


def _count(name: str) -> Column:
    return Column(name, "BIGINT", "add")


TS = "TIMESTAMP"

USERS = TableSpec(
    "users",
    (_c("username"),),
    (_c("first_seen_at", TS, "min"), _c("last_seen_at", TS, "max"), _c("first_seq", "BIGINT", "min")),
)
MESSAGE_COUNTS = TableSpec(
    "message_counts", (_c("username"), _c("channel"), _c("domain")), (_count("message_count"),)
)
PM_COUNTS = TableSpec("pm_counts", (_c("username"),), (_count("pm_count"),))
KUDOS_PLUSPLUS = TableSpec(
    "kudos_plusplus", (_c("username"), _c("channel"), _c("domain")), (_count("kudos_count"),)
)
KUDOS_PHRASES = TableSpec(
    "kudos_phrases",
    (_c("username"), _c("channel"), _c("domain"), _c("phrase")),
    (_count("kudos_count"),),
)
EMOTE_USAGE = TableSpec(
    "emote_usage",
    (_c("username"), _c("channel"), _c("domain"), _c("emote")),
    (_count("usage_count"),),
)
USER_ACTIVITY = TableSpec(
    "user_activity",
    (_c("username"), _c("channel"), _c("domain")),
    (_count("total_time_seconds"), _count("not_afk_time_seconds")),
)
MEDIA_CHANGES = TableSpec(
    "media_changes",
    (_c("seq", "BIGINT"),),
    (
        _c("channel"),
        _c("domain"),
        _c("timestamp", TS),
        _c("media_title"),
        _c("media_type"),
        _c("media_id"),
    ),
)
MOVIE_VOTES = TableSpec(
    "movie_votes",
    (_c("channel"), _c("domain"), _c("media_title"), _c("username")),
    (_c("media_type"), _c("media_id"), _c("vote", "BIGINT"), _c("timestamp", TS)),
)
POPULATION_SNAPSHOTS = TableSpec(
    "population_snapshots",
    (_c("channel"), _c("domain"), _c("timestamp", TS)),
    (_c("connected_count", "BIGINT"), _c("chat_count", "BIGINT")),
)
HOURLY_MESSAGES = TableSpec(
    "hourly_messages", (_c("channel"), _c("domain"), _c("hour", TS)), (_count("message_count"),)
)
HOURLY_KUDOS = TableSpec(
    "hourly_kudos", (_c("channel"), _c("domain"), _c("hour", TS)), (_count("kudos_count"),)
)
USER_ALIASES = TableSpec("user_aliases", (_c("username"), _c("alias")), (_c("seq", "BIGINT"),))
TRIGGER_PHRASES = TableSpec("kudos_trigger_phrases", (_c("phrase"),), ())

# Projection state: what the pure projection needs besides the statistics themselves.
CHANNEL_EMOTES = TableSpec("channel_emotes", (_c("domain"), _c("channel"), _c("emote")), ())
CURRENT_MEDIA = TableSpec(
    "current_media",
    (_c("domain"), _c("channel")),
    (_c("media_title"), _c("media_type"), _c("media_id")),
)
OPEN_SESSIONS = TableSpec(
    "open_sessions",
    (_c("domain"), _c("channel"), _c("username")),
    (
        _c("join_us", "BIGINT"),
        _c("is_afk", "BOOLEAN"),
        _c("afk_start_us", "BIGINT"),
        _c("afk_total_s", "BIGINT"),
    ),
)
RECENT_CHAT = TableSpec(
    "recent_chat",
    (_c("domain"), _c("channel"), _c("seq", "BIGINT")),
    (_c("username"), _c("time_ms", "BIGINT"), _c("msg")),
)
CHANNEL_CLOCK = TableSpec("channel_clock", (_c("domain"), _c("channel")), (_c("last_boundary_us", "BIGINT"),))
PROJECTION_SETTINGS = TableSpec("projection_settings", (_c("name"),), (_c("value"),))
PROJECTION_COUNTERS = TableSpec("projection_counters", (_c("name"),), (_count("value"),))
DEAD_LETTERS = TableSpec(
    "dead_letters",
    (_c("seq", "BIGINT"),),
    (_c("subject"), _c("error"), _c("raw", "BLOB"), _c("stream_time", TS)),
)

TABLES: tuple[TableSpec, ...] = (
    USERS,
    MESSAGE_COUNTS,
    PM_COUNTS,
    KUDOS_PLUSPLUS,
    KUDOS_PHRASES,
    EMOTE_USAGE,
    USER_ACTIVITY,
    MEDIA_CHANGES,
    MOVIE_VOTES,
    POPULATION_SNAPSHOTS,
    HOURLY_MESSAGES,
    HOURLY_KUDOS,
    USER_ALIASES,
    TRIGGER_PHRASES,
    CHANNEL_EMOTES,
    CURRENT_MEDIA,
    OPEN_SESSIONS,
    RECENT_CHAT,
    CHANNEL_CLOCK,
    PROJECTION_SETTINGS,
    PROJECTION_COUNTERS,
    DEAD_LETTERS,
)

# One row: the stream position the tables reflect, written in the same transaction.
CHECKPOINT_TABLE = "projection_checkpoint"
CHECKPOINT_DDL = (
    f"CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} ("
    "id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, projection_version INTEGER NOT NULL, "
    "generation VARCHAR NOT NULL, event_time_us BIGINT NOT NULL)"
)

ALL_TABLE_NAMES: tuple[str, ...] = (*(t.name for t in TABLES), CHECKPOINT_TABLE)


def table_ddl(spec: TableSpec, *, with_keys: bool = True) -> str:
    cols = ", ".join(f"{c.name} {c.sqltype}" for c in spec.columns)
    keys = f", PRIMARY KEY ({', '.join(c.name for c in spec.keys)})" if with_keys else ""
    return f"CREATE TABLE IF NOT EXISTS {spec.name} ({cols}{keys})"


def ddl() -> list[str]:
    """Statements that create every table (idempotent)."""
    return [*(table_ddl(t) for t in TABLES), CHECKPOINT_DDL]
