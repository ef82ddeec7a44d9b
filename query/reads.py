"""Read-only queries behind each command, on a replica's private DuckDB copy.

Names are matched case-insensitively and replies use the stored spelling. Time windows
(`hours`, `days`, the 24 h history) end at the newest event time in the log (`as_of_us`),
not at the replica's clock, so the same log gives the same answer anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from userstats.shared import messages as m
from userstats.shared import schema
from userstats.shared.state import SERVER_USER

HOUR_FMT = "%Y-%m-%d %H:00:00"


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


_U = "lower(username) = lower(?)"
_D = "lower(domain) = lower(?)"
_C = "lower(channel) = lower(?)"


def _rows(sc: Scope, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    return sc.con.execute(sql, params).fetchall()


def _one(sc: Scope, sql: str, params: list[Any]) -> Any:
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
    found = _one(
        sc,
        "SELECT username FROM users WHERE lower(username) = lower(?) ORDER BY first_seq, username LIMIT 1",
        [username],
    )
    return str(found) if found is not None else username


def channel_spelling(sc: Scope, domain: str, channel: str) -> str:
    found = _one(
        sc,
        f"SELECT channel FROM channel_clock WHERE {_D} AND {_C} LIMIT 1",
        [domain, channel],
    )
    return str(found) if found is not None else channel


def channel_note(sc: Scope, channel: str | None, domain: str | None) -> str | None:
    """Why an answer about `channel` is empty: it is on another domain, or nowhere. None
    when the channel has data on the domain asked about."""
    if not channel:
        return None
    d = domain_of(sc, domain)
    if _one(sc, f"SELECT 1 FROM channel_clock WHERE {_D} AND {_C}", [d, channel]):
        return None
    holders = _rows(
        sc,
        "SELECT DISTINCT domain, channel FROM (SELECT domain, channel FROM channel_clock "
        "UNION ALL SELECT domain, channel FROM counters WHERE channel <> '' "
        "UNION ALL SELECT domain, channel FROM population_snapshots "
        "UNION ALL SELECT domain, channel FROM media_changes) "
        f"WHERE {_C} ORDER BY domain",
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
    known = _rows(sc, "SELECT domain, channel FROM channel_clock ORDER BY domain, channel LIMIT 11", [])
    listed = ", ".join(f"{dom}/{ch}" for dom, ch in known[:10]) + (", ..." if len(known) > 10 else "")
    return f"channel {channel} has no data on {d}; " + (
        f"channels with data: {listed}" if known else "no channel has data yet"
    )


# --- per-user -------------------------------------------------------------------------


class UserFigures:
    """Every statistic of one user (any case of the name) from a single scan of `counters`;
    the per-command figures are picked out in Python (one query instead of eight)."""

    def __init__(self, sc: Scope, user: str) -> None:
        kinds = (schema.MESSAGES, schema.PMS, schema.PLUSPLUS, schema.PHRASES, schema.EMOTES, schema.ACTIVITY)
        self.rows: list[tuple[str, str, str, str, int, int]] = [
            (k, c, d, i, int(n1), int(n2))
            for k, c, d, i, n1, n2 in _rows(
                sc,
                "SELECT kind, channel, domain, item, sum(n1), sum(n2) FROM counters "
                f"WHERE kind IN ({', '.join('?' * len(kinds))}) AND lower(username) = lower(?) GROUP BY ALL",
                [*kinds, user],
            )
        ]

    def _sum_by(
        self, kind: str, domain: str | None, key: int, channel: str | None = None
    ) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        dl, cl = (domain or "").lower(), (channel or "").lower()
        for row in self.rows:
            if row[0] != kind or (domain is not None and row[2].lower() != dl):
                continue
            if channel is not None and row[1].lower() != cl:
                continue
            acc = out.setdefault(str(row[key]), [0, 0])
            acc[0] += row[4]
            acc[1] += row[5]
        return out

    def total(self, kind: str, domain: str | None, channel: str | None = None) -> int:
        return sum(v[0] for v in self._sum_by(kind, domain, 0, channel).values())

    def ranked(self, kind: str, domain: str, key: int) -> list[tuple[str, int]]:
        """(name, count) by count descending, then name; key 1 = channel, 3 = item."""
        grouped = self._sum_by(kind, domain, key)
        return sorted(((name, v[0]) for name, v in grouped.items()), key=lambda x: (-x[1], x[0]))

    def channel_counts(self, domain: str) -> list[m.ChannelCountRow]:
        return [m.ChannelCountRow(c, n) for c, n in self.ranked(schema.MESSAGES, domain, 1)]

    def phrases(self, domain: str) -> list[m.PhraseRow]:
        return [m.PhraseRow(p, n) for p, n in self.ranked(schema.PHRASES, domain, 3)]

    def emotes(self, domain: str) -> list[m.EmoteRow]:
        return [m.EmoteRow(e, n) for e, n in self.ranked(schema.EMOTES, domain, 3)]

    def activity(self, channel: str, domain: str) -> m.ActivityRow | None:
        grouped = self._sum_by(schema.ACTIVITY, domain, 0, channel)
        if not grouped:
            return None
        total, not_afk = grouped[schema.ACTIVITY]
        return m.ActivityRow(total, not_afk)

    def all_activity(self, domain: str) -> list[m.ChannelActivityRow]:
        grouped = self._sum_by(schema.ACTIVITY, domain, 1)
        return [m.ChannelActivityRow(c, v[0], v[1]) for c, v in sorted(grouped.items())]


def user_seen(sc: Scope, user: str) -> tuple[str | None, str | None]:
    """First and last seen (ISO) over every spelling of the name, or None for an unknown user."""
    row = sc.con.execute(
        f"SELECT min(first_seen_at), max(last_seen_at) FROM users WHERE {_U}", [user]
    ).fetchone()
    if row is None or row[0] is None:
        return None, None
    return iso(row[0]), iso(row[1])


def user_aliases(sc: Scope, user: str) -> list[str]:
    return [str(a) for (a,) in _rows(sc, f"SELECT alias FROM user_aliases WHERE {_U} ORDER BY alias", [user])]


def user_stats(sc: Scope, p: m.UserParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    user = user_spelling(sc, p.username)
    f = UserFigures(sc, user)
    out: dict[str, Any] = {
        "username": user,
        "messages": f.total(schema.MESSAGES, d, p.channel) if p.channel else 0,
        "all_messages": f.channel_counts(d),
        "pms": f.total(schema.PMS, None),
        "kudos_plusplus": f.total(schema.PLUSPLUS, d),
        "kudos_phrases": f.phrases(d),
        "emotes": f.emotes(d),
    }
    if p.channel:
        out["activity"] = f.activity(p.channel, d)
    else:
        out["all_activity"] = f.all_activity(d)
    out["aliases"] = user_aliases(sc, user)
    out["first_seen"], out["last_seen"] = user_seen(sc, user)
    return out


def user_profile(sc: Scope, p: m.UserParams) -> dict[str, Any]:
    s = user_stats(sc, p)
    activity = s["activity"] if p.channel else s["all_activity"]
    return {
        "username": s["username"],
        "messages": s["messages"],
        "all_messages": s["all_messages"],
        "pms": s["pms"],
        "kudos": {"plusplus": s["kudos_plusplus"], "phrases": s["kudos_phrases"]},
        "emotes": s["emotes"],
        "activity": activity,
    }


def user_messages(sc: Scope, p: m.UserParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    user = user_spelling(sc, p.username)
    f = UserFigures(sc, user)
    if p.channel:
        return {
            "username": user,
            "channel": channel_spelling(sc, d, p.channel),
            "message_count": f.total(schema.MESSAGES, d, p.channel),
        }
    return {"username": user, "channels": f.channel_counts(d)}


def user_activity(sc: Scope, p: m.UserParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    user = user_spelling(sc, p.username)
    f = UserFigures(sc, user)
    first, last = user_seen(sc, user)
    if p.channel:
        return {
            "username": user,
            "channel": channel_spelling(sc, d, p.channel),
            "activity": f.activity(p.channel, d),
            "first_seen": first,
            "last_seen": last,
        }
    return {"username": user, "all_activity": f.all_activity(d), "first_seen": first, "last_seen": last}


def user_kudos(sc: Scope, p: m.UserDomainParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    user = user_spelling(sc, p.username)
    f = UserFigures(sc, user)
    plusplus, phrases = f.total(schema.PLUSPLUS, d), f.phrases(d)
    received = plusplus + sum(row.count for row in phrases)
    return {"username": user, "plusplus": plusplus, "phrases": phrases, "total_received": received}


# --- per-channel ------------------------------------------------------------------------


def top_users(sc: Scope, channel: str | None, domain: str, limit: int) -> list[m.TopRow]:
    chan_filter = f" AND {_C}" if channel else ""
    params: list[Any] = [domain, *([channel] if channel else []), SERVER_USER, m.clamp_limit(limit)]
    return [
        m.TopRow(u, int(n))
        for u, n in _rows(
            sc,
            f"SELECT username, sum(message_count) AS n FROM message_counts WHERE {_D}{chan_filter} "
            "AND username <> ? GROUP BY username ORDER BY n DESC, username LIMIT ?",
            params,
        )
    ]


def channel_top_users(sc: Scope, p: m.TopUsersParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    return {"channel": channel_spelling(sc, d, p.channel), "top_users": top_users(sc, p.channel, d, p.limit)}


def snapshot_rows(sc: Scope, channel: str, domain: str, since: datetime | None) -> list[m.SnapshotRow]:
    since_filter = " AND timestamp >= ?" if since is not None else ""
    params: list[Any] = [channel, domain, *([since] if since is not None else [])]
    return [
        m.SnapshotRow(iso(ts), int(c), int(k))
        for ts, c, k in _rows(
            sc,
            "SELECT timestamp, connected_count, chat_count FROM population_snapshots "
            f"WHERE {_C} AND {_D}{since_filter} ORDER BY timestamp DESC",
            params,
        )
    ]


def current_snapshot(sc: Scope, channel: str, domain: str) -> m.SnapshotRow | None:
    row = sc.con.execute(
        "SELECT timestamp, connected_count, chat_count FROM population_snapshots "
        f"WHERE {_C} AND {_D} ORDER BY timestamp DESC LIMIT 1",
        [channel, domain],
    ).fetchone()
    return m.SnapshotRow(iso(row[0]), int(row[1]), int(row[2])) if row else None


def as_of_minus(sc: Scope, seconds: float) -> datetime:
    """The start of a window of `seconds` ending at the newest event time (naive UTC)."""
    return datetime(1970, 1, 1) + timedelta(microseconds=sc.as_of_us - int(seconds * 1_000_000))


def channel_population(sc: Scope, p: m.PopulationParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    history = snapshot_rows(sc, p.channel, d, as_of_minus(sc, p.hours * 3600))
    connected = [row.connected_count for row in history]
    return {
        "channel": channel_spelling(sc, d, p.channel),
        "current": current_snapshot(sc, p.channel, d),
        "history": history,
        "peak": max(connected, default=0),
        "average": round(sum(connected) / len(connected), 2) if connected else 0.0,
    }


def media_history(sc: Scope, channel: str, domain: str, limit: int) -> list[m.MediaRow]:
    return [
        m.MediaRow(iso(ts), t, ty, i)
        for ts, t, ty, i in _rows(
            sc,
            "SELECT timestamp, media_title, media_type, media_id FROM media_changes "
            f"WHERE {_C} AND {_D} ORDER BY seq DESC LIMIT ?",
            [channel, domain, m.clamp_limit(limit)],
        )
    ]


def channel_media_history(sc: Scope, p: m.MediaHistoryParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    return {
        "channel": channel_spelling(sc, d, p.channel),
        "history": media_history(sc, p.channel, d, p.limit),
    }


def watermarks(sc: Scope, channel: str, domain: str, days: float | None) -> dict[str, Any]:
    """Exact max and min of the population over the window (newest row on ties)."""
    if days is not None and days <= 0:
        return {"high": None, "low": None}
    since = as_of_minus(sc, days * 86400) if days is not None else None
    since_filter = " AND timestamp >= ?" if since is not None else ""
    params: list[Any] = [channel, domain, *([since] if since is not None else [])]
    base = (
        "SELECT timestamp, connected_count, chat_count FROM population_snapshots "
        f"WHERE {_C} AND {_D}{since_filter}"
    )
    out: dict[str, Any] = {}
    for key, order in (("high", "connected_count DESC"), ("low", "connected_count ASC")):
        row = sc.con.execute(f"{base} ORDER BY {order}, timestamp DESC LIMIT 1", params).fetchone()
        out[key] = m.MarkRow(iso(row[0]), int(row[1]), int(row[2])) if row else None
    return out


def channel_watermarks(sc: Scope, p: m.WatermarksParams) -> dict[str, Any]:
    return watermarks(sc, p.channel, domain_of(sc, p.domain), p.days)


_VOTES_SQL = (
    "SELECT media_title, arg_max(media_type, timestamp), arg_max(media_id, timestamp), "
    "count(*) FILTER (WHERE vote > 0), count(*) FILTER (WHERE vote < 0), count(*), sum(vote), "
    "max(timestamp) "
    f"FROM movie_votes WHERE {_C} AND {_D}"
)


def movie_votes(sc: Scope, channel: str, domain: str) -> list[m.VoteRow]:
    return [
        m.VoteRow(t, ty, i, int(up), int(down), int(n), int(score), iso(last))
        for t, ty, i, up, down, n, score, last in _rows(
            sc, f"{_VOTES_SQL} GROUP BY media_title ORDER BY sum(vote) DESC, media_title", [channel, domain]
        )
    ]


def channel_movie_votes(sc: Scope, p: m.MovieVotesParams) -> Any:
    d = domain_of(sc, p.domain)
    if p.media_title is None:
        return movie_votes(sc, p.channel, d)
    row = sc.con.execute(
        f"{_VOTES_SQL} AND media_title = ? GROUP BY media_title", [p.channel, d, p.media_title]
    ).fetchone()
    if row is None:
        return None
    return m.VoteSummary(row[0], row[1], row[2], int(row[3]), int(row[4]), int(row[5]), int(row[6]))


def channel_list(sc: Scope, p: m.ChannelListParams) -> dict[str, Any]:
    """Every channel with an event in the log (of `domain` if given), by chat lines, with its
    newest population snapshot."""
    where, params = (" WHERE lower(ch.domain) = lower(?)", [p.domain]) if p.domain else ("", [])
    rows = _rows(
        sc,
        "WITH ch AS (SELECT domain, channel FROM channel_clock UNION "
        "  SELECT domain, channel FROM message_counts WHERE channel <> ''), "
        "msg AS (SELECT domain, channel, sum(message_count) AS n FROM message_counts GROUP BY ALL), "
        "pop AS (SELECT domain, channel, timestamp, connected_count, chat_count FROM population_snapshots "
        "  QUALIFY row_number() OVER (PARTITION BY domain, channel ORDER BY timestamp DESC) = 1) "
        "SELECT ch.domain, ch.channel, coalesce(msg.n, 0) AS n, pop.timestamp, pop.connected_count, "
        "pop.chat_count FROM ch LEFT JOIN msg USING (domain, channel) LEFT JOIN pop USING (domain, channel)"
        f"{where} ORDER BY n DESC, ch.domain, ch.channel LIMIT {m.MAX_LIMIT}",
        params,
    )
    return {
        "channels": [
            m.ChannelRow(d, c, int(n), None if ts is None else m.SnapshotRow(iso(ts), int(k), int(chat)))
            for d, c, n, ts, k, chat in rows
        ]
    }


def stats_global(sc: Scope, p: m.ChannelParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    return {
        "channel": channel_spelling(sc, d, p.channel),
        "domain": d,
        "top_users": top_users(sc, p.channel, d, 10),
        "watermarks": watermarks(sc, p.channel, d, None),
        "population": {
            "current": current_snapshot(sc, p.channel, d),
            "history": snapshot_rows(sc, p.channel, d, as_of_minus(sc, 86400)),
        },
    }


# --- leaderboards -----------------------------------------------------------------------


def leaderboard_messages(sc: Scope, p: m.LeaderboardMessagesParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    channel = channel_spelling(sc, d, p.channel) if p.channel else None
    return {"channel": channel, "leaderboard": top_users(sc, p.channel, d, p.limit)}


def leaderboard_all(sc: Scope, p: m.LeaderboardAllParams) -> dict[str, Any]:
    """Messages (of `channel`, else every channel of the domain), kudos and emotes at once."""
    d = domain_of(sc, p.domain)
    return {
        "channel": channel_spelling(sc, d, p.channel) if p.channel else None,
        "messages": top_users(sc, p.channel, d, p.limit),
        "kudos": kudos_leaderboard(sc, d, p.limit),
        "emotes": emote_leaderboard(sc, d, p.limit),
    }


def kudos_leaderboard(sc: Scope, domain: str, limit: int) -> list[m.TopRow]:
    return [
        m.TopRow(u, int(n))
        for u, n in _rows(
            sc,
            "SELECT username, sum(n) AS total FROM ("
            f"  SELECT username, kudos_count AS n FROM kudos_plusplus WHERE {_D}"
            f"  UNION ALL SELECT username, kudos_count FROM kudos_phrases WHERE {_D}"
            ") WHERE username <> ? GROUP BY username ORDER BY total DESC, username LIMIT ?",
            [domain, domain, SERVER_USER, m.clamp_limit(limit)],
        )
    ]


def emote_leaderboard(sc: Scope, domain: str, limit: int) -> list[m.EmoteRow]:
    return [
        m.EmoteRow(e, int(n))
        for e, n in _rows(
            sc,
            f"SELECT emote, sum(usage_count) AS n FROM emote_usage WHERE {_D} GROUP BY emote "
            "ORDER BY n DESC, emote LIMIT ?",
            [domain, m.clamp_limit(limit)],
        )
    ]


def leaderboard_kudos(sc: Scope, p: m.LeaderboardParams) -> dict[str, Any]:
    return {"leaderboard": kudos_leaderboard(sc, domain_of(sc, p.domain), p.limit)}


def leaderboard_emotes(sc: Scope, p: m.LeaderboardParams) -> dict[str, Any]:
    return {"leaderboard": emote_leaderboard(sc, domain_of(sc, p.domain), p.limit)}


# --- time series --------------------------------------------------------------------------


def parse_time(value: str | None, name: str) -> datetime | None:
    """Any ISO-8601 date or date-time (offsets, Z, a date alone); naive means UTC."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise m.RequestError(f"{name}: not an ISO-8601 date or date-time: {value!r}") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def _range_filter(column: str, start: datetime | None, end: datetime | None) -> tuple[str, list[Any]]:
    sql, params = "", []
    if start is not None:
        sql += f" AND {column} >= ?"
        params.append(start)
    if end is not None:
        sql += f" AND {column} <= ?"
        params.append(end)
    return sql, params


def timeseries_messages(sc: Scope, p: m.TimeseriesParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    start, end = parse_time(p.start_time, "start_time"), parse_time(p.end_time, "end_time")
    f_pop, a_pop = _range_filter("timestamp", start, end)
    f_msg, a_msg = _range_filter("hour", start, end)
    rows = _rows(
        sc,
        "WITH pop AS (SELECT date_trunc('hour', timestamp) AS hour, avg(chat_count) AS avg_active "
        f"  FROM population_snapshots WHERE {_C} AND {_D}{f_pop} GROUP BY 1), "
        "msg AS (SELECT hour, sum(message_count) AS messages "
        f"  FROM hourly_messages WHERE {_C} AND {_D}{f_msg} GROUP BY 1) "
        "SELECT coalesce(pop.hour, msg.hour) AS h, pop.avg_active, coalesce(msg.messages, 0) "
        "FROM pop FULL OUTER JOIN msg ON pop.hour = msg.hour ORDER BY h",
        [p.channel, d, *a_pop, p.channel, d, *a_msg],
    )
    return {
        "channel": channel_spelling(sc, d, p.channel),
        "data": [
            {
                "hour": h.strftime(HOUR_FMT),
                "avg_active_users": None if a is None else float(a),
                "messages": int(n),
            }
            for h, a, n in rows
        ],
    }


def timeseries_kudos(sc: Scope, p: m.TimeseriesKudosParams) -> dict[str, Any]:
    d = domain_of(sc, p.domain)
    start, end = parse_time(p.start_time, "start_time"), parse_time(p.end_time, "end_time")
    flt, args = _range_filter("hour", start, end)
    chan = f" AND {_C}" if p.channel else ""
    rows = _rows(
        sc,
        f"SELECT hour, sum(kudos_count) FROM hourly_kudos WHERE {_D}{chan}{flt} GROUP BY hour ORDER BY hour",
        [d, *([p.channel] if p.channel else []), *args],
    )
    return {
        "channel": channel_spelling(sc, d, p.channel) if p.channel else None,
        "data": [{"hour": h.strftime(HOUR_FMT), "kudos": int(n)} for h, n in rows],
    }


# --- system and aliases ----------------------------------------------------------------


def totals(sc: Scope) -> dict[str, int]:
    """Table-derived figures of system.stats and of the Prometheus gauges (one counters scan)."""
    sums = dict(
        _rows(
            sc,
            "SELECT CASE WHEN kind = ? THEN item ELSE kind END AS k, sum(n1) FROM counters "
            "WHERE kind IN (?, ?, ?, ?, ?, ?) GROUP BY k",
            [
                schema.COUNTER,
                schema.COUNTER,
                schema.MESSAGES,
                schema.PMS,
                schema.PLUSPLUS,
                schema.PHRASES,
                schema.EMOTES,
            ],
        )
    )
    row = sc.con.execute(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM media_changes), "
        "(SELECT count(*) FROM open_sessions)"
    ).fetchone()
    assert row is not None

    def get(key: str) -> int:
        return int(sums.get(key) or 0)

    return {
        "total_users": int(row[0]),
        "total_messages": get(schema.MESSAGES),
        "total_pms": get(schema.PMS),
        "total_kudos_plusplus": get(schema.PLUSPLUS),
        "total_kudos_phrases": get(schema.PHRASES),
        "total_emotes": get(schema.EMOTES),
        "total_media_changes": int(row[1]),
        "active_sessions": int(row[2]),
        "events_processed": get("events_processed"),
        "dead_letters": get("dead_letters"),
    }


def dashboard(sc: Scope) -> dict[str, list[tuple[Any, ...]]]:
    """Small labelled figures for Grafana: per channel, and the top 10 of each domain."""
    top = "QUALIFY row_number() OVER (PARTITION BY domain ORDER BY n DESC, name) <= 10"
    return {
        "channel_messages": _rows(
            sc, "SELECT domain, channel, sum(message_count) FROM message_counts GROUP BY ALL", []
        ),
        "channel_population": _rows(
            sc,
            "SELECT domain, channel, connected_count, chat_count FROM population_snapshots "
            "QUALIFY row_number() OVER (PARTITION BY domain, channel ORDER BY timestamp DESC) = 1",
            [],
        ),
        "top_messages": _rows(
            sc,
            "SELECT domain, username AS name, sum(message_count) AS n FROM message_counts "
            f"WHERE username <> ? GROUP BY domain, username {top}",
            [SERVER_USER],
        ),
        "top_kudos": _rows(
            sc,
            "SELECT domain, username AS name, sum(n1) AS n FROM counters WHERE kind IN (?, ?) "
            f"AND username <> ? GROUP BY domain, username {top}",
            [schema.PLUSPLUS, schema.PHRASES, SERVER_USER],
        ),
        "top_emotes": _rows(
            sc,
            "SELECT domain, emote AS name, sum(usage_count) AS n FROM emote_usage "
            f"GROUP BY domain, emote {top}",
            [],
        ),
    }


def alias_list(sc: Scope, p: m.NoParams) -> dict[str, Any]:
    grouped: dict[str, list[str]] = {}
    for user, alias in _rows(sc, "SELECT username, alias FROM user_aliases ORDER BY username, alias", []):
        grouped.setdefault(user, []).append(alias)
    return {
        "aliases": grouped,
        "total_users": len(grouped),
        "total_aliases": sum(len(v) for v in grouped.values()),
    }


def alias_get(sc: Scope, p: m.AliasUserParams) -> dict[str, Any]:
    user = user_spelling(sc, p.username)
    aliases = [
        a for (a,) in _rows(sc, f"SELECT alias FROM user_aliases WHERE {_U} ORDER BY alias", [p.username])
    ]
    return {"username": user, "aliases": aliases, "count": len(aliases)}


def alias_find(sc: Scope, p: m.AliasFindParams) -> dict[str, Any]:
    owner = _one(
        sc, "SELECT username FROM user_aliases WHERE alias = lower(?) ORDER BY seq LIMIT 1", [p.alias]
    )
    return {"alias": p.alias, "username": owner, "found": owner is not None}
