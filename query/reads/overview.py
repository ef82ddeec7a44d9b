"""channel.all_stats (one channel's dashboard in one reply) and system.stats, from the tables."""

from __future__ import annotations

from typing import NamedTuple

from userstats.query.reads.channels import (
    current_snapshot,
    media_history,
    movie_votes,
    snapshot_rows,
    top_users,
    watermarks,
)
from userstats.query.reads.leaderboards import emote_leaderboard, kudos_leaderboard
from userstats.query.reads.scope import Scope, as_of_minus, busiest_channel, channel_note, domain_of
from userstats.shared import messages as m
from userstats.shared import replies as r


class AllStatsTables(NamedTuple):
    """The parts of channel.all_stats that change only with the tables, read at `seq`."""

    seq: int
    note: str | None
    domain: str
    leaderboards: r.AllStatsLeaderboards
    channel: r.AllStatsChannel


def all_stats_tables(sc: Scope, p: m.AllStatsParams, default_channel: str | None, seq: int) -> AllStatsTables:
    """The parts of channel.all_stats that change only with the tables (database thread)."""
    d = domain_of(sc, p.domain)
    channel = p.channel or default_channel
    if not channel:
        seen = busiest_channel(sc.con, d)
        if seen is None:
            raise m.RequestError(
                f"channel required (no channel is configured, and the stream has none of domain {d})",
                "channel.all_stats",
            )
        channel = seen[1]
    lim = p.limits
    return AllStatsTables(
        seq=seq,
        note=channel_note(sc, channel, d),
        domain=d,
        leaderboards=r.AllStatsLeaderboards(
            messages=top_users(sc, channel, d, lim.leaderboards),
            kudos=kudos_leaderboard(sc, d, lim.leaderboards),
            emotes=emote_leaderboard(sc, d, lim.leaderboards),
        ),
        channel=r.AllStatsChannel(
            top_users=top_users(sc, channel, d, lim.top_users),
            population=r.AllStatsPopulation(
                current=current_snapshot(sc, channel, d),
                history_24h=snapshot_rows(sc, channel, d, as_of_minus(sc, 86400)),
            ),
            watermarks=watermarks(sc, channel, d, None),
            media_history=media_history(sc, channel, d, lim.media_history),
            movie_votes=movie_votes(sc, channel, d),
        ),
    )


def system_stats(t: dict[str, int], commands_processed: int) -> r.SystemStats:
    """system.stats from the totals and the dispatcher's count of commands."""
    return r.SystemStats(
        total_users=t["total_users"],
        total_messages=t["total_messages"],
        total_pms=t["total_pms"],
        total_kudos=t["total_kudos_plusplus"],  # ++ only, as 0.7.1
        total_emotes=t["total_emotes"],
        total_media_changes=t["total_media_changes"],
        events_processed=t["events_processed"],
        commands_processed=commands_processed,
        active_sessions=t["active_sessions"],
    )
