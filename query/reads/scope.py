"""What every read shares: the Scope (connection, default domain, log time), row helpers,
name spellings and the note that explains an empty answer about a channel.

Names are matched case-insensitively and replies use the stored spelling. Time windows
(`hours`, `days`, the 24 h history) end at the newest event time in the log (`as_of_us`),
not at the replica's clock, so the same log gives the same answer anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from userstats.shared import schema


@dataclass(frozen=True)
class Scope:
    """What every read needs besides its parameters."""

    con: duckdb.DuckDBPyConnection
    default_domain: str
    as_of_us: int


def iso(ts: datetime | None) -> str:
    if ts is None:
        return ""
    return ts.replace(tzinfo=UTC).isoformat()


BY_USER = "lower(username) = lower(?)"
BY_DOMAIN = "lower(domain) = lower(?)"
BY_CHANNEL = "lower(channel) = lower(?)"


def fetch(sc: Scope, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    return sc.con.execute(sql, params).fetchall()


def fetch_one(sc: Scope, sql: str, params: list[Any]) -> Any:
    row = sc.con.execute(sql, params).fetchone()
    return row[0] if row else None


def domain_of(sc: Scope, domain: str | None) -> str:
    return domain or sc.default_domain


def busiest_channel(con: duckdb.DuckDBPyConnection, domain: str | None = None) -> tuple[str, str] | None:
    """The (domain, channel) with the most chat lines in the log (of `domain` if given), else
    the first channel seen at all: the default when no channel is configured."""
    where, params = ("WHERE lower(domain) = lower(?)", [domain]) if domain else ("", [])
    row = con.execute(
        f"SELECT domain, channel FROM (SELECT domain, channel, 0 AS n FROM channel_clock {where} "
        f"UNION ALL SELECT domain, channel, n1 FROM counters WHERE kind = '{schema.MESSAGES}' "
        f"AND channel <> ''{' AND lower(domain) = lower(?)' if domain else ''}) "
        "GROUP BY domain, channel ORDER BY sum(n) DESC, domain, channel LIMIT 1",
        params * 2,
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def user_spelling(sc: Scope, username: str) -> str:
    """The stored spelling of a user (first seen), or the name as sent."""
    found = fetch_one(
        sc,
        "SELECT username FROM users WHERE lower(username) = lower(?) ORDER BY first_seq, username LIMIT 1",
        [username],
    )
    return str(found) if found is not None else username


def channel_spelling(sc: Scope, domain: str, channel: str) -> str:
    """The stored spelling of a channel (the smallest, when the log has several), or as sent."""
    found = fetch_one(
        sc,
        f"SELECT channel FROM channel_clock WHERE {BY_DOMAIN} AND {BY_CHANNEL} ORDER BY channel LIMIT 1",
        [domain, channel],
    )
    return str(found) if found is not None else channel


def channel_note(sc: Scope, channel: str | None, domain: str | None) -> str | None:
    """Why an answer about `channel` is empty: it is on another domain, or nowhere. None
    when the channel has data on the domain asked about."""
    if not channel:
        return None
    d = domain_of(sc, domain)
    if fetch_one(sc, f"SELECT 1 FROM channel_clock WHERE {BY_DOMAIN} AND {BY_CHANNEL}", [d, channel]):
        return None
    holders = fetch(
        sc,
        "SELECT DISTINCT domain, channel FROM (SELECT domain, channel FROM channel_clock "
        "UNION ALL SELECT domain, channel FROM counters WHERE channel <> '' "
        "UNION ALL SELECT domain, channel FROM population_snapshots "
        "UNION ALL SELECT domain, channel FROM media_changes) "
        f"WHERE {BY_CHANNEL} ORDER BY domain",
        [channel],
    )
    if any(str(dom).lower() == d.lower() for dom, _ in holders):
        return None  # imported history only: no live events, but data
    if holders:
        domains = sorted({str(dom) for dom, _ in holders})
        return (
            f"channel {channel} has no data on {d}; it is on {', '.join(domains)} "
            f"(set domain to {domains[0]})"
        )
    known = fetch(sc, "SELECT domain, channel FROM channel_clock ORDER BY domain, channel LIMIT 11", [])
    listed = ", ".join(f"{dom}/{ch}" for dom, ch in known[:10]) + (", ..." if len(known) > 10 else "")
    return f"channel {channel} has no data on {d}; " + (
        f"channels with data: {listed}" if known else "no channel has data yet"
    )


def as_of_minus(sc: Scope, seconds: float) -> datetime:
    """The start of a window of `seconds` ending at the newest event time (naive UTC)."""
    return datetime(1970, 1, 1) + timedelta(microseconds=sc.as_of_us - int(seconds * 1_000_000))
