"""Whole-database figures: the totals behind system.stats and the gauges, and the dashboard."""

from __future__ import annotations

from typing import Any

from userstats.query.reads.scope import Scope, fetch
from userstats.shared import schema
from userstats.shared.state import SERVER_USER


def totals(sc: Scope) -> dict[str, int]:
    """Table-derived figures of system.stats and of the Prometheus gauges (one counters scan)."""
    sums = dict(
        fetch(
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
        "channel_messages": fetch(
            sc, "SELECT domain, channel, sum(message_count) FROM message_counts GROUP BY ALL", []
        ),
        "channel_population": fetch(
            sc,
            "SELECT domain, channel, connected_count, chat_count FROM population_snapshots "
            "QUALIFY row_number() OVER (PARTITION BY domain, channel ORDER BY timestamp DESC) = 1",
            [],
        ),
        "top_messages": fetch(
            sc,
            "SELECT domain, username AS name, sum(message_count) AS n FROM message_counts "
            f"WHERE username <> ? GROUP BY domain, username {top}",
            [SERVER_USER],
        ),
        "top_kudos": fetch(
            sc,
            "SELECT domain, username AS name, sum(n1) AS n FROM counters WHERE kind IN (?, ?) "
            f"AND username <> ? GROUP BY domain, username {top}",
            [schema.PLUSPLUS, schema.PHRASES, SERVER_USER],
        ),
        "top_emotes": fetch(
            sc,
            "SELECT domain, emote AS name, sum(usage_count) AS n FROM emote_usage "
            f"GROUP BY domain, emote {top}",
            [],
        ),
    }
