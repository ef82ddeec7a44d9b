"""The user.* and alias.* reads: one user's figures from a single scan of `counters`, and aliases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from msgspec import UNSET, UnsetType
from userstats.query.reads.scope import (
    BY_USER,
    Scope,
    channel_spelling,
    fetch,
    fetch_one,
    iso,
    user_spelling,
)
from userstats.shared import messages as m
from userstats.shared import replies as r
from userstats.shared import schema

Row = tuple[str, str, str, str, int, int]  # kind, channel, domain, item, n1, n2


class UserSource(Protocol):
    """Where the user.* reads get a user's rows: the tables (SqlUsers) or the replica's read
    model (query/model.py), which must give the same answers."""

    @property
    def default_domain(self) -> str: ...
    def spelling(self, username: str) -> str: ...
    def counter_rows(self, user: str) -> list[Row]: ...
    def seen(self, user: str) -> tuple[str | None, str | None]: ...
    def aliases(self, user: str) -> list[str]: ...
    def alias_owner(self, alias: str) -> str | None: ...
    def channel_spelling(self, domain: str, channel: str) -> str: ...


_KINDS = (schema.MESSAGES, schema.PMS, schema.PLUSPLUS, schema.PHRASES, schema.EMOTES, schema.ACTIVITY)


class SqlUsers:
    """A UserSource over the tables."""

    def __init__(self, sc: Scope) -> None:
        self.sc = sc
        self.default_domain = sc.default_domain

    def spelling(self, username: str) -> str:
        return user_spelling(self.sc, username)

    def counter_rows(self, user: str) -> list[Row]:
        """Every statistic of one user (any case of the name) from a single scan of `counters`."""
        return [
            (k, c, d, i, int(n1), int(n2))
            for k, c, d, i, n1, n2 in fetch(
                self.sc,
                "SELECT kind, channel, domain, item, sum(n1), sum(n2) FROM counters "
                f"WHERE kind IN ({', '.join('?' * len(_KINDS))}) AND lower(username) = lower(?) GROUP BY ALL",
                [*_KINDS, user],
            )
        ]

    def seen(self, user: str) -> tuple[str | None, str | None]:
        """First and last seen (ISO) over every spelling of the name, or None for an unknown user."""
        row = self.sc.con.execute(
            f"SELECT min(first_seen_at), max(last_seen_at) FROM users WHERE {BY_USER}", [user]
        ).fetchone()
        if row is None or row[0] is None:
            return None, None
        return iso(row[0]), iso(row[1])

    def aliases(self, user: str) -> list[str]:
        return [
            str(a)
            for (a,) in fetch(
                self.sc, f"SELECT alias FROM user_aliases WHERE {BY_USER} ORDER BY alias", [user]
            )
        ]

    def alias_owner(self, alias: str) -> str | None:
        """Who owns an alias (stored lower-cased): the earliest to take it, then by name."""
        owner = fetch_one(
            self.sc,
            "SELECT username FROM user_aliases WHERE alias = lower(?) ORDER BY seq, username LIMIT 1",
            [alias],
        )
        return None if owner is None else str(owner)

    def channel_spelling(self, domain: str, channel: str) -> str:
        return channel_spelling(self.sc, domain, channel)


class UserFigures:
    """Every statistic of one user from its `counters` rows; the per-command figures are
    picked out in Python (one query instead of eight)."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows

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


def stats_of(src: UserSource, p: m.UserParams) -> r.UserStats:
    d = p.domain or src.default_domain
    user = src.spelling(p.username)
    f = UserFigures(src.counter_rows(user))
    first, last = src.seen(user)
    return r.UserStats(
        username=user,
        messages=f.total(schema.MESSAGES, d, p.channel) if p.channel else 0,
        all_messages=f.channel_counts(d),
        pms=f.total(schema.PMS, None),
        kudos_plusplus=f.total(schema.PLUSPLUS, d),
        kudos_phrases=f.phrases(d),
        emotes=f.emotes(d),
        activity=f.activity(p.channel, d) if p.channel else UNSET,
        all_activity=UNSET if p.channel else f.all_activity(d),
        aliases=src.aliases(user),
        first_seen=first,
        last_seen=last,
    )


def profile_of(src: UserSource, p: m.UserParams) -> r.UserProfile:
    s = stats_of(src, p)
    activity = s.activity if p.channel else s.all_activity
    assert not isinstance(activity, UnsetType)
    return r.UserProfile(
        username=s.username,
        messages=s.messages,
        all_messages=s.all_messages,
        pms=s.pms,
        kudos=r.ProfileKudos(plusplus=s.kudos_plusplus, phrases=s.kudos_phrases),
        emotes=s.emotes,
        activity=activity,
    )


def messages_of(src: UserSource, p: m.UserMessagesParams) -> r.UserMessages:
    d = p.domain or src.default_domain
    user = src.spelling(p.username)
    f = UserFigures(src.counter_rows(user))
    if p.channel:
        return r.UserMessages(
            username=user,
            channel=src.channel_spelling(d, p.channel),
            message_count=f.total(schema.MESSAGES, d, p.channel),
        )
    return r.UserMessages(username=user, channels=f.channel_counts(d))


def activity_of(src: UserSource, p: m.UserParams) -> r.UserActivity:
    d = p.domain or src.default_domain
    user = src.spelling(p.username)
    f = UserFigures(src.counter_rows(user))
    first, last = src.seen(user)
    if p.channel:
        return r.UserActivity(
            username=user,
            channel=src.channel_spelling(d, p.channel),
            activity=f.activity(p.channel, d),
            first_seen=first,
            last_seen=last,
        )
    return r.UserActivity(username=user, all_activity=f.all_activity(d), first_seen=first, last_seen=last)


def kudos_of(src: UserSource, p: m.UserDomainParams) -> r.UserKudos:
    d = p.domain or src.default_domain
    user = src.spelling(p.username)
    f = UserFigures(src.counter_rows(user))
    plusplus, phrases = f.total(schema.PLUSPLUS, d), f.phrases(d)
    received = plusplus + sum(row.count for row in phrases)
    return r.UserKudos(username=user, plusplus=plusplus, phrases=phrases, total_received=received)


def alias_get_of(src: UserSource, p: m.AliasUserParams) -> r.AliasGet:
    aliases = src.aliases(p.username)
    return r.AliasGet(username=src.spelling(p.username), aliases=aliases, count=len(aliases))


def alias_find_of(src: UserSource, p: m.AliasFindParams) -> r.AliasFound:
    owner = src.alias_owner(p.alias)
    return r.AliasFound(alias=p.alias, username=owner, found=owner is not None)


# The reads a UserSource answers, by command (the replica answers these from its read model).
SOURCE_READS: dict[str, Callable[[UserSource, Any], Any]] = {
    "user.stats": stats_of,
    "user.profile": profile_of,
    "user.messages": messages_of,
    "user.activity": activity_of,
    "user.kudos": kudos_of,
    "alias.get": alias_get_of,
    "alias.find": alias_find_of,
}


def user_stats(sc: Scope, p: m.UserParams) -> r.UserStats:
    return stats_of(SqlUsers(sc), p)


def user_profile(sc: Scope, p: m.UserParams) -> r.UserProfile:
    return profile_of(SqlUsers(sc), p)


def user_messages(sc: Scope, p: m.UserMessagesParams) -> r.UserMessages:
    return messages_of(SqlUsers(sc), p)


def user_activity(sc: Scope, p: m.UserParams) -> r.UserActivity:
    return activity_of(SqlUsers(sc), p)


def user_kudos(sc: Scope, p: m.UserDomainParams) -> r.UserKudos:
    return kudos_of(SqlUsers(sc), p)


def alias_list(sc: Scope, p: m.NoParams) -> r.AliasList:
    grouped: dict[str, list[str]] = {}
    for user, alias in fetch(sc, "SELECT username, alias FROM user_aliases ORDER BY username, alias", []):
        grouped.setdefault(user, []).append(alias)
    return r.AliasList(
        aliases=grouped, total_users=len(grouped), total_aliases=sum(len(v) for v in grouped.values())
    )


def alias_get(sc: Scope, p: m.AliasUserParams) -> r.AliasGet:
    return alias_get_of(SqlUsers(sc), p)


def alias_find(sc: Scope, p: m.AliasFindParams) -> r.AliasFound:
    return alias_find_of(SqlUsers(sc), p)
