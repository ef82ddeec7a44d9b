"""The channel.* and stats.global reads: top users, population, media, watermarks, votes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from userstats.query.reads.scope import (
    BY_CHANNEL,
    BY_DOMAIN,
    Scope,
    as_of_minus,
    channel_spelling,
    domain_of,
    fetch,
    iso,
)
from userstats.shared import messages as m
from userstats.shared import replies as r
from userstats.shared.state import SERVER_USER


def top_users(sc: Scope, channel: str | None, domain: str, limit: int) -> list[m.TopRow]:
    chan_filter = f" AND {BY_CHANNEL}" if channel else ""
    params: list[Any] = [domain, *([channel] if channel else []), SERVER_USER, m.clamp_limit(limit)]
    return [
        m.TopRow(u, int(n))
        for u, n in fetch(
            sc,
            f"SELECT username, sum(message_count) AS n FROM message_counts WHERE {BY_DOMAIN}{chan_filter} "
            "AND username <> ? GROUP BY username ORDER BY n DESC, username LIMIT ?",
            params,
        )
    ]


def channel_top_users(sc: Scope, p: m.TopUsersParams) -> r.ChannelTopUsers:
    d = domain_of(sc, p.domain)
    return r.ChannelTopUsers(
        channel=channel_spelling(sc, d, p.channel), top_users=top_users(sc, p.channel, d, p.limit)
    )


def snapshot_rows(sc: Scope, channel: str, domain: str, since: datetime | None) -> list[m.SnapshotRow]:
    since_filter = " AND timestamp >= ?" if since is not None else ""
    params: list[Any] = [channel, domain, *([since] if since is not None else [])]
    return [
        m.SnapshotRow(iso(ts), int(c), int(k))
        for ts, c, k in fetch(
            sc,
            "SELECT timestamp, connected_count, chat_count FROM population_snapshots "
            f"WHERE {BY_CHANNEL} AND {BY_DOMAIN}{since_filter} ORDER BY timestamp DESC",
            params,
        )
    ]


def current_snapshot(sc: Scope, channel: str, domain: str) -> m.SnapshotRow | None:
    row = sc.con.execute(
        "SELECT timestamp, connected_count, chat_count FROM population_snapshots "
        f"WHERE {BY_CHANNEL} AND {BY_DOMAIN} ORDER BY timestamp DESC LIMIT 1",
        [channel, domain],
    ).fetchone()
    return m.SnapshotRow(iso(row[0]), int(row[1]), int(row[2])) if row else None


def channel_population(sc: Scope, p: m.PopulationParams) -> r.ChannelPopulation:
    d = domain_of(sc, p.domain)
    history = snapshot_rows(sc, p.channel, d, as_of_minus(sc, p.hours * 3600))
    connected = [row.connected_count for row in history]
    return r.ChannelPopulation(
        channel=channel_spelling(sc, d, p.channel),
        current=current_snapshot(sc, p.channel, d),
        history=history,
        peak=max(connected, default=0),
        average=round(sum(connected) / len(connected), 2) if connected else 0.0,
    )


def media_history(sc: Scope, channel: str, domain: str, limit: int) -> list[m.MediaRow]:
    return [
        m.MediaRow(iso(ts), t, ty, i)
        for ts, t, ty, i in fetch(
            sc,
            "SELECT timestamp, media_title, media_type, media_id FROM media_changes "
            f"WHERE {BY_CHANNEL} AND {BY_DOMAIN} ORDER BY seq DESC LIMIT ?",
            [channel, domain, m.clamp_limit(limit)],
        )
    ]


def channel_media_history(sc: Scope, p: m.MediaHistoryParams) -> r.ChannelMediaHistory:
    d = domain_of(sc, p.domain)
    return r.ChannelMediaHistory(
        channel=channel_spelling(sc, d, p.channel),
        history=media_history(sc, p.channel, d, p.limit),
    )


def watermarks(sc: Scope, channel: str, domain: str, days: float | None) -> r.Watermarks:
    """Exact max and min of the population over the window (newest row on ties)."""
    if days is not None and days <= 0:
        return r.Watermarks(high=None, low=None)
    since = as_of_minus(sc, days * 86400) if days is not None else None
    since_filter = " AND timestamp >= ?" if since is not None else ""
    params: list[Any] = [channel, domain, *([since] if since is not None else [])]
    base = (
        "SELECT timestamp, connected_count, chat_count FROM population_snapshots "
        f"WHERE {BY_CHANNEL} AND {BY_DOMAIN}{since_filter}"
    )
    marks: list[m.MarkRow | None] = []
    for order in ("connected_count DESC", "connected_count ASC"):
        row = sc.con.execute(f"{base} ORDER BY {order}, timestamp DESC LIMIT 1", params).fetchone()
        marks.append(m.MarkRow(iso(row[0]), int(row[1]), int(row[2])) if row else None)
    return r.Watermarks(high=marks[0], low=marks[1])


def channel_watermarks(sc: Scope, p: m.WatermarksParams) -> r.Watermarks:
    return watermarks(sc, p.channel, domain_of(sc, p.domain), p.days)


_VOTES_SQL = (
    "SELECT media_title, arg_max(media_type, timestamp), arg_max(media_id, timestamp), "
    "count(*) FILTER (WHERE vote > 0), count(*) FILTER (WHERE vote < 0), count(*), sum(vote), "
    "max(timestamp) "
    f"FROM movie_votes WHERE {BY_CHANNEL} AND {BY_DOMAIN}"
)


def movie_votes(sc: Scope, channel: str, domain: str) -> list[m.VoteRow]:
    return [
        m.VoteRow(t, ty, i, int(up), int(down), int(n), int(score), iso(last))
        for t, ty, i, up, down, n, score, last in fetch(
            sc, f"{_VOTES_SQL} GROUP BY media_title ORDER BY sum(vote) DESC, media_title", [channel, domain]
        )
    ]


def channel_movie_votes(sc: Scope, p: m.MovieVotesParams) -> list[m.VoteRow] | m.VoteSummary | None:
    d = domain_of(sc, p.domain)
    if p.media_title is None:
        return movie_votes(sc, p.channel, d)
    row = sc.con.execute(
        f"{_VOTES_SQL} AND media_title = ? GROUP BY media_title", [p.channel, d, p.media_title]
    ).fetchone()
    if row is None:
        return None
    return m.VoteSummary(row[0], row[1], row[2], int(row[3]), int(row[4]), int(row[5]), int(row[6]))


def channel_list(sc: Scope, p: m.ChannelListParams) -> r.ChannelList:
    """Every channel with an event in the log (of `domain` if given), by chat lines, with its
    newest population snapshot."""
    where, params = (" WHERE lower(ch.domain) = lower(?)", [p.domain]) if p.domain else ("", [])
    rows = fetch(
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
    return r.ChannelList(
        channels=[
            m.ChannelRow(d, c, int(n), None if ts is None else m.SnapshotRow(iso(ts), int(k), int(chat)))
            for d, c, n, ts, k, chat in rows
        ]
    )


def stats_global(sc: Scope, p: m.ChannelParams) -> r.StatsGlobal:
    d = domain_of(sc, p.domain)
    return r.StatsGlobal(
        channel=channel_spelling(sc, d, p.channel),
        domain=d,
        top_users=top_users(sc, p.channel, d, 10),
        watermarks=watermarks(sc, p.channel, d, None),
        population=r.Population(
            current=current_snapshot(sc, p.channel, d),
            history=snapshot_rows(sc, p.channel, d, as_of_minus(sc, 86400)),
        ),
    )
