"""Reading a kryten-userstats 0.7.1 SQLite file (spec 3.18): open it read-only, check its tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.request import pathname2url

# What a 0.7.1 database has (spec 3.18). `users` and `message_counts` must be there for a
# file to count as a kryten-userstats database; the others may be missing in old versions.
REQUIRED = ("users", "message_counts")
COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("username", "first_seen_at", "last_seen_at"),
    "message_counts": ("username", "channel", "domain", "message_count"),
    "pm_counts": ("username", "pm_count"),
    "kudos_plusplus": ("username", "channel", "domain", "kudos_count"),
    "kudos_phrases": ("username", "channel", "domain", "phrase", "kudos_count"),
    "emote_usage": ("username", "channel", "domain", "emote", "usage_count"),
    "user_activity": ("username", "channel", "domain", "total_time_seconds", "not_afk_time_seconds"),
    "media_changes": ("id", "channel", "domain", "timestamp", "media_title", "media_type", "media_id"),
    "population_snapshots": ("channel", "domain", "timestamp", "connected_count", "chat_count"),
    "movie_votes": (
        "channel",
        "domain",
        "media_title",
        "media_type",
        "media_id",
        "username",
        "vote",
        "timestamp",
    ),
    "user_aliases": ("username", "alias"),
    "kudos_trigger_phrases": ("phrase",),
    "population_watermarks": ("channel", "domain", "timestamp", "total_users", "chat_users", "is_high_mark"),
}
# Read and counted, but not imported; the summary says why.
NOT_IMPORTED = {
    "kudos_trigger_phrases": "trigger phrases come from the config (kudos.default_phrases): "
    "copy them there if they differ",
    "population_watermarks": "derived: high and low marks are computed from the imported "
    "population snapshots",
}


class SourceError(Exception):
    """The file cannot be imported; the message says why."""


def open_source(path: Path) -> tuple[sqlite3.Connection, list[str]]:
    """Open read-only and check it is a kryten-userstats database; returns the present tables."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        con, names = _connect(path, immutable=False)
    except sqlite3.OperationalError as exc:
        # A WAL-mode file (0.7.1 uses WAL) in a read-only place cannot be opened read-only:
        # SQLite wants to create its -shm file. With no pending log it is safe to read as is.
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise SourceError(
                f"{path} cannot be opened read-only here ({exc}) and its write-ahead log {wal.name} "
                "holds changes not yet in the file: copy both files to a writable directory and "
                "import from there (stop kryten-userstats first)"
            ) from exc
        try:
            con, names = _connect(path, immutable=True)
        except sqlite3.DatabaseError as exc2:
            raise SourceError(f"{path} cannot be read: {exc2}") from exc2
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{path} is not an SQLite database ({exc})") from exc
    absent = [t for t in REQUIRED if t not in names]
    if absent:
        con.close()
        raise SourceError(
            f"{path} is not a kryten-userstats database: it has no {' or '.join(absent)} table "
            f"(tables found: {', '.join(sorted(names)) or 'none'})"
        )
    present = [t for t in COLUMNS if t in names]
    for table in present:
        have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
        lacking = [c for c in COLUMNS[table] if c not in have]
        if lacking:
            con.close()
            raise SourceError(
                f"{path} is not a kryten-userstats 0.7.1 database: table {table} lacks "
                f"column(s) {', '.join(lacking)}"
            )
    return con, present


def _connect(path: Path, immutable: bool) -> tuple[sqlite3.Connection, set[str]]:
    uri = f"file:{pathname2url(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
    con = sqlite3.connect(uri, uri=True)
    try:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        con.close()
        raise
    return con, names


def select(table: str) -> str:
    """The query that reads a table in its 0.7.1 insertion order."""
    order = "id" if table == "media_changes" else "rowid"
    return f"SELECT {', '.join(COLUMNS[table])} FROM {table} ORDER BY {order}"


def count_rows(con: sqlite3.Connection, tables: list[str]) -> dict[str, int]:
    return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}
