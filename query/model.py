"""The replica's in-memory read model: what the user.* reads need, kept from the same Deltas
the tables get, so those reads run without DuckDB and see a batch as soon as it is projected.

It holds, per lower-cased username, that user's rows of `counters` (the user kinds),
`users` and `user_aliases` exactly as the tables hold them (same keys, same merge rules), plus
the `channel_clock` keys and the chat lines per channel (for the default channel). `apply`
changes it the way `shared/apply.apply_batch` changes the tables: the forget purge first,
then each table's deletes, then its upserts. It is owned by the event loop: `apply` and every
read run there, so a read sees exactly one applied sequence (`seq`).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from sys import intern

import duckdb
from userstats.shared import forget, schema
from userstats.shared.delta import Delta

USER_KINDS = frozenset(
    {schema.MESSAGES, schema.PMS, schema.PLUSPLUS, schema.PHRASES, schema.EMOTES, schema.ACTIVITY}
)
CounterKey = tuple[str, str, str, str, str, int]  # kind, username, channel, domain, item, bucket
Row = tuple[str, str, str, str, int, int]  # kind, channel, domain, item, n1, n2 (UserFigures' rows)
_EPOCHS = itertools.count(1)
_LOAD_CHUNK = 10_000
_EPOCH0 = datetime(1970, 1, 1)


def iso_us(us: int) -> str:
    """The ISO form reads give a TIMESTAMP column fed with epoch microseconds."""
    return (_EPOCH0 + timedelta(microseconds=us)).replace(tzinfo=UTC).isoformat()


class UserEntry:
    """One lower-cased name: every spelling's rows."""

    __slots__ = ("aliases", "counters", "spellings")

    def __init__(self) -> None:
        self.counters: dict[CounterKey, list[int]] = {}
        self.spellings: dict[str, list[int]] = {}  # username -> [first_seen_us, last_seen_us, first_seq]
        self.aliases: dict[tuple[str, str], int] = {}  # (username, alias) -> seq

    def empty(self) -> bool:
        return not (self.counters or self.spellings or self.aliases)


class ReadModel:
    def __init__(self, seq: int = 0, event_us: int = 0) -> None:
        self.epoch = next(_EPOCHS)  # a new model (a snapshot load) invalidates every cached reply
        self.seq = seq
        self.event_us = event_us
        self.users: dict[str, UserEntry] = {}
        self.alias_owners: dict[str, dict[str, int]] = {}  # alias -> {username: seq}, for alias.find
        self.changed: dict[str, int] = {}  # lower-cased name -> the last seq that changed its rows
        self.forget_seq = 0  # the last batch that forgot a user: no cached reply from before it
        self.clock: dict[tuple[str, str], str] = {}  # (domain, channel) lower -> the smallest spelling
        self._clock_keys: set[tuple[str, str]] = set()
        self.channel_messages: dict[tuple[str, str], int] = {}  # (domain, channel) -> chat lines
        self._busiest: tuple[int, str | None, tuple[str, str] | None] = (-1, None, None)

    # --- building and applying -------------------------------------------------------------

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> ReadModel:
        """The model of the tables `con` holds (at their checkpoint)."""
        row = con.execute(f"SELECT seq, event_time_us FROM {schema.CHECKPOINT_TABLE}").fetchone()
        assert row is not None
        model = cls(int(row[0]), int(row[1]))
        kinds = sorted(USER_KINDS)
        # Read in chunks, so the fetched rows are never all in memory at once.
        cur = con.execute(
            "SELECT kind, username, channel, domain, item, bucket, n1, n2 FROM counters "
            f"WHERE kind IN ({', '.join('?' * len(kinds))}) AND username <> ''",
            kinds,
        )
        while chunk := cur.fetchmany(_LOAD_CHUNK):
            for k, u, c, d, i, b, n1, n2 in chunk:
                model._put_counter((k, u, c, d, i, int(b)), int(n1), int(n2))
        for name, first, last, first_seq in con.execute(
            "SELECT username, epoch_us(first_seen_at), epoch_us(last_seen_at), first_seq FROM users"
        ).fetchall():
            model._entry(name).spellings[name] = [int(first), int(last), int(first_seq)]
        for name, alias, seq in con.execute("SELECT username, alias, seq FROM user_aliases").fetchall():
            model._set_alias(name, alias, int(seq))
        for domain, channel in con.execute("SELECT domain, channel FROM channel_clock").fetchall():
            model._add_clock(domain, channel)
        model.changed.clear()
        return model

    def _entry(self, name: str) -> UserEntry:
        low = name.lower()
        e = self.users.get(low)
        if e is None:
            e = self.users[low] = UserEntry()
        return e

    def _put_counter(self, key: CounterKey, n1: int, n2: int) -> None:
        counters = self._entry(key[1]).counters
        row = counters.get(key)
        if row is None:
            # A new row's key keeps one object per distinct string (the rows of a load or of an
            # import's delta each bring their own): after importing 208k counters rows the model
            # takes 58 MiB instead of 103. sys.intern's strings go with their last reference.
            k, u, c, d, i, b = key
            counters[(intern(k), intern(u), intern(c), intern(d), intern(i), b)] = [n1, n2]
        else:
            row[0] += n1
            row[1] += n2
        if key[0] == schema.MESSAGES and key[2]:
            ck = (key[3], key[2])
            self.channel_messages[ck] = self.channel_messages.get(ck, 0) + n1

    def _drop_counter(self, key: CounterKey) -> None:
        e = self.users.get(key[1].lower())
        row = e.counters.pop(key, None) if e is not None else None
        if row is not None and key[0] == schema.MESSAGES and key[2]:
            ck = (key[3], key[2])
            left = self.channel_messages[ck] - row[0]
            if left:
                self.channel_messages[ck] = left
            else:  # no chat line left there: the channel has no counters row (as in the tables)
                del self.channel_messages[ck]

    def _set_alias(self, name: str, alias: str, seq: int) -> None:
        self._entry(name).aliases[(name, alias)] = seq
        self.alias_owners.setdefault(alias, {})[name] = seq

    def _drop_alias(self, name: str, alias: str) -> None:
        e = self.users.get(name.lower())
        if e is not None:
            e.aliases.pop((name, alias), None)
        owners = self.alias_owners.get(alias)
        if owners is not None:
            owners.pop(name, None)
            if not owners:
                del self.alias_owners[alias]

    def _add_clock(self, domain: str, channel: str) -> None:
        self._clock_keys.add((domain, channel))
        key = (domain.lower(), channel.lower())
        seen = self.clock.get(key)
        if seen is None or channel < seen:  # the smallest spelling, as reads.channel_spelling
            self.clock[key] = channel

    def apply(self, delta: Delta, seq: int, event_us: int) -> None:
        """Apply one batch's delta, as apply_batch applies it to the tables."""
        changed = self.changed
        if delta.forget:
            self._purge(delta.forget, seq)
            self.forget_seq = seq
        counters = delta.counters
        for key in counters.deletes:
            if key[0] in USER_KINDS and key[1]:
                self._drop_counter(key)
                changed[key[1].lower()] = seq
        for key, (n1, n2) in counters.upserts.items():
            if key[0] in USER_KINDS and key[1]:
                self._put_counter(key, n1, n2)
                changed[key[1].lower()] = seq
        for (name,) in delta.users.deletes:
            e = self.users.get(name.lower())
            if e is not None:
                e.spellings.pop(name, None)
            changed[name.lower()] = seq
        for (name,), (first, last, first_seq) in delta.users.upserts.items():
            spellings = self._entry(name).spellings
            row = spellings.get(name)
            if row is None:
                spellings[name] = [first, last, first_seq]
            else:
                row[0], row[1], row[2] = min(row[0], first), max(row[1], last), min(row[2], first_seq)
            changed[name.lower()] = seq
        for name, alias in delta.aliases.deletes:
            self._drop_alias(name, alias)
            changed[name.lower()] = seq
        for (name, alias), (aseq,) in delta.aliases.upserts.items():
            self._set_alias(name, alias, aseq)
            changed[name.lower()] = seq
        if delta.clock.deletes:
            self._clock_keys -= delta.clock.deletes
            self.clock = {}
            for d, c in sorted(self._clock_keys):
                self.clock.setdefault((d.lower(), c.lower()), c)
        for domain, channel in delta.clock.upserts:
            self._add_clock(domain, channel)
        self.seq = seq
        self.event_us = max(self.event_us, event_us)

    def _purge(self, hashes: set[str], seq: int) -> None:
        """user.forget: every row naming a forgotten user goes (as apply.purge_users)."""
        hit = forget.user_hash
        for low in [low for low in self.users if hit(low) in hashes]:
            for key in list(self.users[low].counters):
                self._drop_counter(key)
            for name, alias in list(self.users[low].aliases):
                self._drop_alias(name, alias)
            del self.users[low]
            self.changed[low] = seq
        for low, e in self.users.items():  # an alias that is the forgotten name
            gone = [k for k in e.aliases if hit(k[1]) in hashes]
            for name, alias in gone:
                self._drop_alias(name, alias)
            if gone:
                self.changed[low] = seq

    # --- what the reads ask -------------------------------------------------------------------

    def spelling(self, username: str) -> str:
        """The stored spelling (smallest first_seq, then name), or the name as sent."""
        e = self.users.get(username.lower())
        if e is None or not e.spellings:
            return username
        return min(e.spellings.items(), key=lambda kv: (kv[1][2], kv[0]))[0]

    def counter_rows(self, user: str) -> list[Row]:
        """The user's counters rows of the user kinds, summed over spellings and buckets."""
        e = self.users.get(user.lower())
        if e is None:
            return []
        grouped: dict[tuple[str, str, str, str], list[int]] = {}
        for (k, _u, c, d, i, _b), (n1, n2) in e.counters.items():
            acc = grouped.get((k, c, d, i))
            if acc is None:
                grouped[(k, c, d, i)] = [n1, n2]
            else:
                acc[0] += n1
                acc[1] += n2
        return [(k, c, d, i, n1, n2) for (k, c, d, i), (n1, n2) in grouped.items()]

    def seen(self, user: str) -> tuple[str | None, str | None]:
        e = self.users.get(user.lower())
        if e is None or not e.spellings:
            return None, None
        rows = e.spellings.values()
        return iso_us(min(r[0] for r in rows)), iso_us(max(r[1] for r in rows))

    def aliases(self, user: str) -> list[str]:
        e = self.users.get(user.lower())
        return sorted(a for _u, a in e.aliases) if e is not None else []

    def alias_owner(self, alias: str) -> str | None:
        """Who owns an alias (stored lower-cased): the earliest to take it, then by name."""
        owners = self.alias_owners.get(alias.lower())
        if not owners:
            return None
        return min(owners.items(), key=lambda kv: (kv[1], kv[0]))[0]

    def channel_spelling(self, domain: str, channel: str) -> str:
        return self.clock.get((domain.lower(), channel.lower()), channel)

    def has_channel(self, domain: str, channel: str) -> bool:
        return (domain.lower(), channel.lower()) in self.clock

    def busiest_channel(self) -> tuple[str, str] | None:
        """As reads.busiest_channel without a domain: most chat lines, else the first seen."""
        seq, _, found = self._busiest
        if seq == self.seq:
            return found
        totals: dict[tuple[str, str], int] = dict.fromkeys(self._clock_keys, 0)
        for key, n in self.channel_messages.items():
            totals[key] = totals.get(key, 0) + n
        best = min(totals.items(), key=lambda kv: (-kv[1], kv[0]), default=None)
        found = best[0] if best else None
        self._busiest = (self.seq, None, found)
        return found


class ModelUsers:
    """The model as a reads.UserSource, with the default domain of the request."""

    def __init__(self, model: ReadModel, default_domain: str) -> None:
        self.default_domain = default_domain
        self.spelling = model.spelling
        self.counter_rows = model.counter_rows
        self.seen = model.seen
        self.aliases = model.aliases
        self.alias_owner = model.alias_owner
        self.channel_spelling = model.channel_spelling
