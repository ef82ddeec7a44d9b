"""The leaderboard.* reads: messages, kudos (++ and phrases) and emotes of a domain."""

from __future__ import annotations

from userstats.query.reads.channels import top_users
from userstats.query.reads.scope import BY_DOMAIN, Scope, channel_spelling, domain_of, fetch
from userstats.shared import messages as m
from userstats.shared import replies as r
from userstats.shared.state import SERVER_USER


def leaderboard_messages(sc: Scope, p: m.LeaderboardMessagesParams) -> r.MessagesLeaderboard:
    d = domain_of(sc, p.domain)
    channel = channel_spelling(sc, d, p.channel) if p.channel else None
    return r.MessagesLeaderboard(channel=channel, leaderboard=top_users(sc, p.channel, d, p.limit))


def leaderboard_all(sc: Scope, p: m.LeaderboardAllParams) -> r.LeaderboardAll:
    """Messages (of `channel`, else every channel of the domain), kudos and emotes at once."""
    d = domain_of(sc, p.domain)
    return r.LeaderboardAll(
        channel=channel_spelling(sc, d, p.channel) if p.channel else None,
        messages=top_users(sc, p.channel, d, p.limit),
        kudos=kudos_leaderboard(sc, d, p.limit),
        emotes=emote_leaderboard(sc, d, p.limit),
    )


def kudos_leaderboard(sc: Scope, domain: str, limit: int) -> list[m.TopRow]:
    return [
        m.TopRow(u, int(n))
        for u, n in fetch(
            sc,
            "SELECT username, sum(n) AS total FROM ("
            f"  SELECT username, kudos_count AS n FROM kudos_plusplus WHERE {BY_DOMAIN}"
            f"  UNION ALL SELECT username, kudos_count FROM kudos_phrases WHERE {BY_DOMAIN}"
            ") WHERE username <> ? GROUP BY username ORDER BY total DESC, username LIMIT ?",
            [domain, domain, SERVER_USER, m.clamp_limit(limit)],
        )
    ]


def emote_leaderboard(sc: Scope, domain: str, limit: int) -> list[m.EmoteRow]:
    return [
        m.EmoteRow(e, int(n))
        for e, n in fetch(
            sc,
            f"SELECT emote, sum(usage_count) AS n FROM emote_usage WHERE {BY_DOMAIN} GROUP BY emote "
            "ORDER BY n DESC, emote LIMIT ?",
            [domain, m.clamp_limit(limit)],
        )
    ]


def leaderboard_kudos(sc: Scope, p: m.LeaderboardParams) -> r.KudosLeaderboard:
    return r.KudosLeaderboard(leaderboard=kudos_leaderboard(sc, domain_of(sc, p.domain), p.limit))


def leaderboard_emotes(sc: Scope, p: m.LeaderboardParams) -> r.EmotesLeaderboard:
    return r.EmotesLeaderboard(leaderboard=emote_leaderboard(sc, domain_of(sc, p.domain), p.limit))
