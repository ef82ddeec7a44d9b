"""The table changes a batch of events produces, merged in memory before one apply.

A `TableDelta` holds keyed upserts (already merged with the column's rule, so each key
appears once) and keyed deletes. Upserting a key cancels its pending delete and vice versa,
so applying deletes first, then upserts, gives the batch's final state. Each table's keys
are its typed key (shared/keys.py), in the order of its key columns.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

from userstats.shared import keys as k
from userstats.shared import schema
from userstats.shared.schema import TableSpec

Key = tuple[Any, ...]
K = TypeVar("K", bound=Key)
Values = list[Any]


class TableDelta(Generic[K]):
    __slots__ = ("_mergers", "deletes", "fresh", "spec", "upserts")

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.upserts: dict[K, Values] = {}
        self.deletes: set[K] = set()
        self.fresh: set[K] = set()  # put with new=True: not in the table before this batch
        self._mergers = tuple(c.merge for c in spec.values)

    def __len__(self) -> int:
        return len(self.upserts) + len(self.deletes)

    def incr(self, key: K, n: int = 1) -> None:
        """Add to the first count of a row."""
        row = self.upserts.get(key)
        if row is None:
            row = self.upserts[key] = [0] * len(self._mergers)
        row[0] += n

    def put(self, key: K, values: Values, new: bool = False) -> None:
        """Upsert a row, merging with a pending upsert of the same key by column rule.

        `new=True` promises the key is not in the table as of the last apply, so a later
        delete in the same batch cancels the insert instead of reaching SQL.
        """
        was_deleted = False
        if self.deletes and key in self.deletes:
            self.deletes.discard(key)
            was_deleted = True
        row = self.upserts.get(key)
        if row is None:
            self.upserts[key] = list(values)
            if new and not was_deleted:
                self.fresh.add(key)
            return
        for i, how in enumerate(self._mergers):
            if how == "add":
                row[i] += values[i]
            elif how == "min":
                row[i] = min(row[i], values[i])
            elif how == "max":
                row[i] = max(row[i], values[i])
            else:
                row[i] = values[i]

    def delete(self, key: K) -> None:
        self.upserts.pop(key, None)
        if key in self.fresh:
            self.fresh.discard(key)
        else:
            self.deletes.add(key)

    def clear(self) -> None:
        self.upserts.clear()
        self.deletes.clear()
        self.fresh.clear()


class CounterDelta(TableDelta[k.CounterKey]):
    """The counters table, with the hot path's increment by key fields."""

    __slots__ = ()

    def count(
        self, kind: str, username: str, channel: str, domain: str, item: str, bucket: int, n: int = 1
    ) -> None:
        """`incr(CounterKey(kind, ...), n)`, building the CounterKey only for a row new to the
        batch: a plain tuple of the same fields is equal to it and hashes the same, and is several
        times cheaper to build than a NamedTuple (the hot path: a chat line counts 2-4 rows)."""
        fields = (kind, username, channel, domain, item, bucket)
        row = self.upserts.get(cast(k.CounterKey, fields))
        if row is None:
            row = self.upserts[k.CounterKey(*fields)] = [0] * len(self._mergers)
        row[0] += n


class Delta:
    """One TableDelta per projection table, addressed by attribute."""

    def __init__(self) -> None:
        self.counters = CounterDelta(schema.COUNTERS)
        self.tables: dict[str, TableDelta[Any]] = {
            t.name: self.counters if t is schema.COUNTERS else TableDelta(t) for t in schema.TABLES
        }
        t = self.tables
        self.users: TableDelta[k.UserKey] = t[schema.USERS.name]
        self.media_changes: TableDelta[k.MediaChangeKey] = t[schema.MEDIA_CHANGES.name]
        self.movie_votes: TableDelta[k.VoteKey] = t[schema.MOVIE_VOTES.name]
        self.population: TableDelta[k.PopulationKey] = t[schema.POPULATION_SNAPSHOTS.name]
        self.aliases: TableDelta[k.AliasKey] = t[schema.USER_ALIASES.name]
        self.phrases: TableDelta[k.PhraseKey] = t[schema.TRIGGER_PHRASES.name]
        self.channel_emotes: TableDelta[k.ChannelEmoteKey] = t[schema.CHANNEL_EMOTES.name]
        self.current_media: TableDelta[k.ChannelKey] = t[schema.CURRENT_MEDIA.name]
        self.sessions: TableDelta[k.SessionKey] = t[schema.OPEN_SESSIONS.name]
        self.recent_chat: TableDelta[k.ChannelKey] = t[schema.RECENT_CHAT.name]
        self.clock: TableDelta[k.ChannelKey] = t[schema.CHANNEL_CLOCK.name]
        self.settings: TableDelta[k.SettingKey] = t[schema.PROJECTION_SETTINGS.name]
        self.parts: TableDelta[k.ChannelPartKey] = t[schema.CHANNEL_PARTS.name]
        self.baselines: TableDelta[k.BaselineKey] = t[schema.IMPORT_BASELINES.name]
        self.forgotten: TableDelta[k.ForgottenKey] = t[schema.FORGOTTEN_USERS.name]
        self.pm_erase: TableDelta[k.PmEraseKey] = t[schema.PM_ERASE_QUEUE.name]
        self.dead_letters: TableDelta[k.DeadLetterKey] = t[schema.DEAD_LETTERS.name]
        # user.forget: hashes whose rows apply purges from every table before the rest; and
        # the stream seqs of a forgotten user's events the projection ignored (ingest deletes them)
        self.forget: set[str] = set()
        self.forgotten_seqs: list[int] = []

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables.values()) + len(self.forget)

    def clear(self) -> None:
        for t in self.tables.values():
            t.clear()
        self.forget.clear()
        self.forgotten_seqs.clear()
