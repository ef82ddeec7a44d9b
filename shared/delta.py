"""The table changes a batch of events produces, merged in memory before one apply.

A `TableDelta` holds keyed upserts (already merged with the column's rule, so each key
appears once) and keyed deletes. Upserting a key cancels its pending delete and vice versa,
so applying deletes first, then upserts, gives the batch's final state.
"""

from __future__ import annotations

from typing import Any

from userstats.shared import schema
from userstats.shared.schema import TableSpec

Key = tuple[Any, ...]
Values = list[Any]


class TableDelta:
    __slots__ = ("_mergers", "deletes", "fresh", "spec", "upserts")

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.upserts: dict[Key, Values] = {}
        self.deletes: set[Key] = set()
        self.fresh: set[Key] = set()  # put with new=True: not in the table before this batch
        self._mergers = tuple(c.merge for c in spec.values)

    def __len__(self) -> int:
        return len(self.upserts) + len(self.deletes)

    def incr(self, key: Key, n: int = 1) -> None:
        """Add to the first count of a row (the hot path: messages, kudos, emotes)."""
        row = self.upserts.get(key)
        if row is None:
            row = self.upserts[key] = [0] * len(self._mergers)
        row[0] += n

    def put(self, key: Key, values: Values, new: bool = False) -> None:
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

    def delete(self, key: Key) -> None:
        self.upserts.pop(key, None)
        if key in self.fresh:
            self.fresh.discard(key)
        else:
            self.deletes.add(key)

    def clear(self) -> None:
        self.upserts.clear()
        self.deletes.clear()
        self.fresh.clear()


class Delta:
    """One TableDelta per projection table, addressed by attribute."""

    def __init__(self) -> None:
        self.tables: dict[str, TableDelta] = {t.name: TableDelta(t) for t in schema.TABLES}
        t = self.tables
        self.users = t[schema.USERS.name]
        self.counters = t[schema.COUNTERS.name]
        self.media_changes = t[schema.MEDIA_CHANGES.name]
        self.movie_votes = t[schema.MOVIE_VOTES.name]
        self.population = t[schema.POPULATION_SNAPSHOTS.name]
        self.aliases = t[schema.USER_ALIASES.name]
        self.phrases = t[schema.TRIGGER_PHRASES.name]
        self.channel_emotes = t[schema.CHANNEL_EMOTES.name]
        self.current_media = t[schema.CURRENT_MEDIA.name]
        self.sessions = t[schema.OPEN_SESSIONS.name]
        self.recent_chat = t[schema.RECENT_CHAT.name]
        self.clock = t[schema.CHANNEL_CLOCK.name]
        self.settings = t[schema.PROJECTION_SETTINGS.name]
        self.parts = t[schema.CHANNEL_PARTS.name]
        self.baselines = t[schema.IMPORT_BASELINES.name]
        self.forgotten = t[schema.FORGOTTEN_USERS.name]
        self.pm_erase = t[schema.PM_ERASE_QUEUE.name]
        self.dead_letters = t[schema.DEAD_LETTERS.name]
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
