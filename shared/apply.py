"""Writes a batch's Delta to DuckDB in one transaction with the checkpoint; loads State back.

Each table gets at most two statements per batch (a keyed DELETE and a keyed upsert fed by
`unnest` of Python lists), never one statement per event.
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from dataclasses import dataclass
from typing import Any

import duckdb
from userstats.shared import forget, schema
from userstats.shared.delta import Delta, TableDelta
from userstats.shared.keys import ChannelKey, ChannelPartKey
from userstats.shared.schema import PM_COUNTED_THROUGH, TableSpec
from userstats.shared.state import Media, ProjectionSettings, RecentChat, Session, State


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    projection_version: int
    generation: str
    event_time_us: int


def create_schema(con: duckdb.DuckDBPyConnection, generation: str | None = None) -> None:
    """Create every table (idempotent) and the checkpoint row at seq 0.

    The generation names this database: a new one (a fresh file, a rebuild) gets a new id,
    so replicas know to reload instead of following.
    """
    for stmt in schema.ddl():
        con.execute(stmt)
    con.execute(
        f"INSERT INTO {schema.CHECKPOINT_TABLE} VALUES (1, 0, ?, ?, 0) ON CONFLICT DO NOTHING",
        [schema.PROJECTION_VERSION, generation or uuid.uuid4().hex],
    )


def read_checkpoint(con: duckdb.DuckDBPyConnection) -> Checkpoint:
    row = con.execute(
        f"SELECT seq, projection_version, generation, event_time_us FROM {schema.CHECKPOINT_TABLE}"
    ).fetchone()
    if row is None:
        raise RuntimeError("checkpoint row missing: the database was not created by userstats")
    return Checkpoint(int(row[0]), int(row[1]), str(row[2]), int(row[3]))


def _param(c: schema.Column, i: int) -> str:
    return f"unnest(${i + 1}::{'BIGINT' if c.sqltype == 'TIMESTAMP' else c.sqltype}[]) AS c{i}"


def _value(c: schema.Column, i: int) -> str:
    return f"make_timestamp(c{i})" if c.sqltype == "TIMESTAMP" else f"c{i}"


@functools.cache
def _upsert_sql(spec: TableSpec) -> str:
    cols = spec.columns
    source = ", ".join(_param(c, i) for i, c in enumerate(cols))
    select = ", ".join(_value(c, i) for i, c in enumerate(cols))
    keys = ", ".join(c.name for c in spec.keys)
    merges = {
        "add": "{t}.{c} + excluded.{c}",
        "min": "least({t}.{c}, excluded.{c})",
        "max": "greatest({t}.{c}, excluded.{c})",
        "set": "excluded.{c}",
    }
    if spec.values:
        sets = ", ".join(f"{c.name} = " + merges[c.merge].format(t=spec.name, c=c.name) for c in spec.values)
        action = f"DO UPDATE SET {sets}"
    else:
        action = "DO NOTHING"
    return (
        f"INSERT INTO {spec.name} ({', '.join(c.name for c in cols)}) "
        f"SELECT {select} FROM (SELECT {source}) ON CONFLICT ({keys}) {action}"
    )


@functools.cache
def _delete_sql(spec: TableSpec) -> str:
    source = ", ".join(_param(c, i) for i, c in enumerate(spec.keys))
    match = " AND ".join(
        f"{spec.name}.{c.name} = " + (f"make_timestamp(d.c{i})" if c.sqltype == "TIMESTAMP" else f"d.c{i}")
        for i, c in enumerate(spec.keys)
    )
    return f"DELETE FROM {spec.name} USING (SELECT {source}) AS d WHERE {match}"


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


def _apply_table(con: duckdb.DuckDBPyConnection, td: TableDelta[Any]) -> None:
    spec = td.spec
    if td.deletes:
        con.execute(_delete_sql(spec), _columns(list(td.deletes), len(spec.keys)))
    if td.upserts:
        rows = [(*k, *v) for k, v in td.upserts.items()]
        con.execute(_upsert_sql(spec), _columns(rows, len(spec.columns)))


def apply_batch(con: duckdb.DuckDBPyConnection, delta: Delta, seq: int, event_us: int) -> None:
    """Write the batch and move the checkpoint to `seq`, atomically."""
    con.execute("BEGIN TRANSACTION")
    try:
        if delta.forget:
            purge_users(con, sorted(delta.forget))
        for td in delta.tables.values():
            _apply_table(con, td)
        con.execute(
            f"UPDATE {schema.CHECKPOINT_TABLE} SET seq = ?, event_time_us = greatest(event_time_us, ?)",
            [seq, event_us],
        )
        con.execute("COMMIT")
    except BaseException:
        # A failed COMMIT (disk full) has already rolled back; keep the original error.
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise


def purge_users(con: duckdb.DuckDBPyConnection, hashes: list[str]) -> None:
    """Delete every row naming a user whose forget hash is in `hashes` (any spelling)."""
    for table, column in schema.USERNAME_COLUMNS:
        con.execute(
            f"DELETE FROM {table} WHERE sha256(? || lower({column})) IN (SELECT unnest(?::VARCHAR[]))",
            [forget.HASH_PREFIX, hashes],
        )
    # a dead letter (raw bytes the projection could not read) that contains the name as a word
    con.execute(
        "DELETE FROM dead_letters WHERE list_has_any(list_transform(regexp_extract_all("
        r"lower(CAST(raw AS VARCHAR)), '[\w\-]+'), lambda w: sha256(? || w)), ?::VARCHAR[])",
        [forget.HASH_PREFIX, hashes],
    )


def load_state(con: duckdb.DuckDBPyConnection) -> State:
    """Rebuild the projection's State from the tables (after a restart or a snapshot load)."""
    st = State()
    for (name,) in con.execute("SELECT username FROM users ORDER BY first_seq, username").fetchall():
        st.users_lower.setdefault(name.lower(), name)
    for username, alias, seq in con.execute("SELECT username, alias, seq FROM user_aliases").fetchall():
        st.aliases.setdefault(alias, {})[username] = int(seq)
    for domain, channel, emote in con.execute("SELECT domain, channel, emote FROM channel_emotes").fetchall():
        st.emotes.setdefault(ChannelKey(domain, channel), set()).add(emote)
    for domain, channel, title, mtype, mid in con.execute(
        "SELECT domain, channel, media_title, media_type, media_id FROM current_media"
    ).fetchall():
        st.current_media[ChannelKey(domain, channel)] = Media(title, mtype, mid)
    for domain, channel, title, mtype, mid in con.execute(
        "SELECT domain, channel, media_title, media_type, media_id FROM media_changes WHERE seq > 0 "
        "QUALIFY row_number() OVER (PARTITION BY domain, channel ORDER BY seq DESC) = 1"
    ).fetchall():
        st.last_media[ChannelKey(domain, channel)] = Media(title, mtype, mid)
    for domain, channel, user, join_us, is_afk, afk_start, afk_total in con.execute(
        "SELECT domain, channel, username, join_us, is_afk, afk_start_us, afk_total_s FROM open_sessions"
    ).fetchall():
        key = ChannelKey(domain, channel)
        st.sessions.setdefault(key, {})[user] = Session(join_us, bool(is_afk), afk_start, afk_total)
        if is_afk:
            st.afk_count[key] = st.afk_count.get(key, 0) + 1
    for domain, channel, lines in con.execute("SELECT domain, channel, lines FROM recent_chat").fetchall():
        recent = st.recent_chat.setdefault(ChannelKey(domain, channel), RecentChat())
        for seq, user, time_ms, msg in json.loads(lines):
            line = (user, int(time_ms), msg)
            recent.order.append((int(seq), line))
            recent.keys[line] = int(seq)
    for domain, channel, boundary in con.execute(
        "SELECT domain, channel, last_boundary_us FROM channel_clock"
    ).fetchall():
        st.clocks[ChannelKey(domain, channel)] = int(boundary)
    for domain, channel, part in con.execute("SELECT domain, channel, part FROM channel_parts").fetchall():
        st.known.add(ChannelPartKey(domain, channel, part))
    for key, n1, n2 in con.execute("SELECT key, n1, n2 FROM import_baselines").fetchall():
        st.baselines[key] = (int(n1), int(n2))
    st.forgotten = {h for (h,) in con.execute("SELECT user_hash FROM forgotten_users").fetchall()}
    settings = dict(con.execute("SELECT name, value FROM projection_settings").fetchall())
    defaults = ProjectionSettings()
    st.settings = ProjectionSettings(
        frozenset(json.loads(settings["trigger_phrases"]))
        if "trigger_phrases" in settings
        else defaults.trigger_phrases,
        json.loads(settings.get("count_shadow_muted", "false")),
        int(settings.get("population_interval_seconds", defaults.population_interval_seconds)),
    )
    st.pm_counted_through = int(settings.get(PM_COUNTED_THROUGH, "0"))
    return st
