"""Table definitions of the projection, and the projection version.

Every table is keyed; a batch changes a table only through keyed upserts (with a merge
rule per value column) and keyed deletes, so `apply.py` can be generic. The snapshot
copies these tables without indexes; a replica recreates them from `ddl()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Bump whenever a rule in shared/projection/ or shared/detectors.py changes what the
# tables would contain for the same log. Ingest rebuilds on mismatch; replicas refuse to
# follow a snapshot made by another version.
# 2: history imported from kryten-userstats 0.7.1 (journal "import" events, import_baselines).
# 3: the stream wins over the bridge's KV (a kvstate event only fills in parts the log does not
#    carry yet: channel_parts); setUserMeta applies meta.afk.
# 4: a population row at each channel's first event; dead-letter paths inside the payload
#    say `$.payload...`.
# 5: user.forget (journal "forget" events, forgotten_users): a forgotten user's rows are
#    removed and the user is never counted again.
# 6: private messages are counted from ingest's "pm" journal event (the raw PM is only held in
#    pm_erase_queue until then, and deleted from the stream); recent_chat keeps a digest of each
#    line's text instead of the text.
PROJECTION_VERSION = 6

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

# Every additive statistic lives in one keyed table, so a batch writes them all with one
# upsert (DuckDB costs ~1.5 ms per upsert statement whatever its size). Unused key parts
# are '' or 0. The views below give each kind the 0.7.1 table name and columns.
COUNTERS = TableSpec(
    "counters",
    (_c("kind"), _c("username"), _c("channel"), _c("domain"), _c("item"), _c("bucket", "BIGINT")),
    (_count("n1"), _count("n2")),
)
MESSAGES = "message"  # username, channel, domain -> messages
PMS = "pm"  # username -> private messages sent
PLUSPLUS = "kudos_pp"  # recipient, channel, domain -> ++ kudos
PHRASES = "kudos_phrase"  # recipient, channel, domain, item=phrase -> phrase kudos
EMOTES = "emote"  # username, channel, domain, item=emote -> uses
ACTIVITY = "activity"  # username, channel, domain -> n1 total seconds, n2 not-AFK seconds
HOURLY_MESSAGES = "hourly_messages"  # channel, domain, bucket=hour start (us) -> messages
HOURLY_KUDOS = "hourly_kudos"  # channel, domain, bucket -> kudos received
COUNTER = "counter"  # item=name -> projection bookkeeping (events_processed, dead_letters, ...)

_KIND = "FROM counters WHERE kind = "
VIEWS: dict[str, str] = {
    "message_counts": f"SELECT username, channel, domain, n1 AS message_count {_KIND}'{MESSAGES}'",
    "pm_counts": f"SELECT username, n1 AS pm_count {_KIND}'{PMS}'",
    "kudos_plusplus": f"SELECT username, channel, domain, n1 AS kudos_count {_KIND}'{PLUSPLUS}'",
    "kudos_phrases": (
        f"SELECT username, channel, domain, item AS phrase, n1 AS kudos_count {_KIND}'{PHRASES}'"
    ),
    "emote_usage": f"SELECT username, channel, domain, item AS emote, n1 AS usage_count {_KIND}'{EMOTES}'",
    "user_activity": (
        "SELECT username, channel, domain, n1 AS total_time_seconds, n2 AS not_afk_time_seconds "
        f"{_KIND}'{ACTIVITY}'"
    ),
    "hourly_messages": (
        "SELECT channel, domain, make_timestamp(bucket) AS hour, n1 AS message_count "
        f"{_KIND}'{HOURLY_MESSAGES}'"
    ),
    "hourly_kudos": (
        f"SELECT channel, domain, make_timestamp(bucket) AS hour, n1 AS kudos_count {_KIND}'{HOURLY_KUDOS}'"
    ),
    "projection_counters": f"SELECT item AS name, n1 AS value {_KIND}'{COUNTER}'",
}
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
# The channel's last chat lines for backlog dedupe, one JSON row per channel:
# [[seq, username, time_ms, digest of the text], ...] oldest first (no chat text at rest).
RECENT_CHAT = TableSpec("recent_chat", (_c("domain"), _c("channel")), (_c("lines"),))
CHANNEL_CLOCK = TableSpec("channel_clock", (_c("domain"), _c("channel")), (_c("last_boundary_us", "BIGINT"),))
PROJECTION_SETTINGS = TableSpec("projection_settings", (_c("name"),), (_c("value"),))
# Which parts of a channel's state the log already carries in full: 'roster' (a userlist),
# 'emotes' (any emote frame), 'media' (a changeMedia), or a kvstate event that filled them in.
# A kvstate event may fill in only the parts not listed here (the stream is the truth).
CHANNEL_PARTS = TableSpec("channel_parts", (_c("domain"), _c("channel"), _c("part")), ())
# The counts an import of each source last brought in, per counters key: a re-import adds
# only the difference. The key is source, kind, username, channel, domain and item joined
# by U+001F: one indexed column takes a third of the memory of six (108 -> 40 MB for 220k
# rows in a replica). The media rows an import brought have negative seq keys (projection).
IMPORT_BASELINES = TableSpec("import_baselines", (_c("key"),), (_c("n1", "BIGINT"), _c("n2", "BIGINT")))
BASELINE_SEP = "\x1f"
# Users removed by user.forget, by shared.forget.user_hash of the lower-cased name (never the
# name), with the seq of the forget event.
FORGOTTEN_USERS = TableSpec("forgotten_users", (_c("user_hash"),), (_c("seq", "BIGINT"),))
# The columns holding a username, which a forget event purges (import_baselines' key holds it
# as its third U+001F-separated part; recent_chat is rewritten by the projection).
USERNAME_COLUMNS: tuple[tuple[str, str], ...] = (
    ("users", "username"),
    ("counters", "username"),
    ("movie_votes", "username"),
    ("user_aliases", "username"),
    ("user_aliases", "alias"),
    ("open_sessions", "username"),
    ("import_baselines", "string_split(key, chr(31))[3]"),
    ("pm_erase_queue", "username"),
)
# Raw private messages projected but not yet counted: ingest appends a "pm" journal event for
# each (which counts it and removes the row) and deletes the raw message from the stream. No
# text: the sender and the PM's event time; for one that could not be projected, its subject
# and error (it becomes a dead letter, without its bytes, when its journal event is projected).
PM_ERASE_QUEUE = TableSpec(
    "pm_erase_queue",
    (_c("seq", "BIGINT"),),
    (_c("username"), _c("time_us", "BIGINT"), _c("subject"), _c("error")),
)
PM_COUNTED_THROUGH = "pm_counted_through"  # projection_settings: State.pm_counted_through
DEAD_LETTERS = TableSpec(
    "dead_letters",
    (_c("seq", "BIGINT"),),
    (_c("subject"), _c("error"), _c("raw", "BLOB"), _c("stream_time", TS)),
)

TABLES: tuple[TableSpec, ...] = (
    USERS,
    COUNTERS,
    MEDIA_CHANGES,
    MOVIE_VOTES,
    POPULATION_SNAPSHOTS,
    USER_ALIASES,
    TRIGGER_PHRASES,
    CHANNEL_EMOTES,
    CURRENT_MEDIA,
    OPEN_SESSIONS,
    RECENT_CHAT,
    CHANNEL_CLOCK,
    PROJECTION_SETTINGS,
    CHANNEL_PARTS,
    IMPORT_BASELINES,
    FORGOTTEN_USERS,
    PM_ERASE_QUEUE,
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
    """Statements that create every table and view (idempotent)."""
    views = [f"CREATE OR REPLACE VIEW {name} AS {sql}" for name, sql in VIEWS.items()]
    return [*(table_ddl(t) for t in TABLES), CHECKPOINT_DDL, *views]
