"""The timeseries.* reads: hourly messages (with the average chatters) and kudos."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from userstats.query.reads.scope import BY_CHANNEL, BY_DOMAIN, Scope, channel_spelling, domain_of, fetch
from userstats.shared import messages as m
from userstats.shared import replies as r

HOUR_FMT = "%Y-%m-%d %H:00:00"


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


def timeseries_messages(sc: Scope, p: m.TimeseriesParams) -> r.MessagesSeries:
    d = domain_of(sc, p.domain)
    start, end = parse_time(p.start_time, "start_time"), parse_time(p.end_time, "end_time")
    f_pop, a_pop = _range_filter("timestamp", start, end)
    f_msg, a_msg = _range_filter("hour", start, end)
    rows = fetch(
        sc,
        "WITH pop AS (SELECT date_trunc('hour', timestamp) AS hour, avg(chat_count) AS avg_active "
        f"  FROM population_snapshots WHERE {BY_CHANNEL} AND {BY_DOMAIN}{f_pop} GROUP BY 1), "
        "msg AS (SELECT hour, sum(message_count) AS messages "
        f"  FROM hourly_messages WHERE {BY_CHANNEL} AND {BY_DOMAIN}{f_msg} GROUP BY 1) "
        "SELECT coalesce(pop.hour, msg.hour) AS h, pop.avg_active, coalesce(msg.messages, 0) "
        "FROM pop FULL OUTER JOIN msg ON pop.hour = msg.hour ORDER BY h",
        [p.channel, d, *a_pop, p.channel, d, *a_msg],
    )
    return r.MessagesSeries(
        channel=channel_spelling(sc, d, p.channel),
        data=[
            r.MessagesHour(
                hour=h.strftime(HOUR_FMT), avg_active_users=None if a is None else float(a), messages=int(n)
            )
            for h, a, n in rows
        ],
    )


def timeseries_kudos(sc: Scope, p: m.TimeseriesKudosParams) -> r.KudosSeries:
    d = domain_of(sc, p.domain)
    start, end = parse_time(p.start_time, "start_time"), parse_time(p.end_time, "end_time")
    flt, args = _range_filter("hour", start, end)
    chan = f" AND {BY_CHANNEL}" if p.channel else ""
    rows = fetch(
        sc,
        f"SELECT hour, sum(kudos_count) FROM hourly_kudos WHERE {BY_DOMAIN}{chan}{flt} "
        "GROUP BY hour ORDER BY hour",
        [d, *([p.channel] if p.channel else []), *args],
    )
    return r.KudosSeries(
        channel=channel_spelling(sc, d, p.channel) if p.channel else None,
        data=[r.KudosHour(hour=h.strftime(HOUR_FMT), kudos=int(n)) for h, n in rows],
    )
