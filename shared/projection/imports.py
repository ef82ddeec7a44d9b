"""History imported from kryten-userstats 0.7.1 (journal "import" events): a re-import adds
only the difference to the counts the last import of the same source brought (baselines)."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from userstats.shared import events as ev
from userstats.shared.keys import AliasKey, BaselineKey, CounterKey, MediaChangeKey, PopulationKey, VoteKey
from userstats.shared.projection.base import Rules
from userstats.shared.schema import BASELINE_SEP

# Imported media rows sort before every live row (keys are stream seqs, all positive) and
# among themselves by time: IMPORTED_MEDIA_BASE + time_us * 64 + row_id % 64.
IMPORTED_MEDIA_BASE = -(2**62)
MAX_IMPORT_TIME_US = 2**52  # year 2112; keeps the keys above negative overflow


class ImportRules(Rules):
    def _import(self, seq: int, e: ev.ImportBatch) -> None:
        _validate_import(e)  # before any change, so a bad batch is a dead letter and nothing else
        if self.state.forgotten:
            e = _without_forgotten(e, self._forgot)
        d = self.delta
        for u in sorted(e.users, key=lambda u: u.username):  # as load_state orders ties
            row = self._users.get(u.username)
            if row is None:
                self._users[u.username] = [u.first_seen_us, u.last_seen_us, seq]
            else:
                row[0], row[1] = min(row[0], u.first_seen_us), max(row[1], u.last_seen_us)
            self.state.users_lower.setdefault(u.username.lower(), u.username)
        baselines = self.state.baselines
        for c in e.counts:
            base_key = BASELINE_SEP.join((e.source, c.kind, c.username, c.channel, c.domain, c.item))
            old = baselines.get(base_key)
            if old == (c.n1, c.n2):
                continue
            old1, old2 = old or (0, 0)
            baselines[base_key] = (c.n1, c.n2)
            d.baselines.put(BaselineKey(base_key), [c.n1, c.n2])
            counter = CounterKey(c.kind, c.username, c.channel, c.domain, c.item, 0)
            d.counters.put(counter, [c.n1 - old1, c.n2 - old2])
        for m in e.media:
            key = MediaChangeKey(IMPORTED_MEDIA_BASE + m.time_us * 64 + m.row_id % 64)
            d.media_changes.put(key, [m.channel, m.domain, m.time_us, m.title, m.media_type, m.media_id])
        for p in e.population:
            d.population.put(PopulationKey(p.channel, p.domain, p.time_us), [p.connected, p.chatting])
        for v in e.votes:
            d.movie_votes.put(
                VoteKey(v.channel, v.domain, v.title, v.username),
                [v.media_type, v.media_id, v.vote, v.time_us],
            )
        for a in e.aliases:
            alias = a.alias.lower()
            if not alias or not a.username:
                continue
            owners = self.state.aliases.setdefault(alias, {})
            if a.username not in owners:
                owners[a.username] = seq
                d.aliases.put(AliasKey(a.username, alias), [seq])
        rows = len(e.users) + len(e.counts) + len(e.media) + len(e.population) + len(e.votes) + len(e.aliases)
        self._count("imported_rows", rows)


def _without_forgotten(e: ev.ImportBatch, forgot: Callable[[str], bool]) -> ev.ImportBatch:
    """An import batch without the rows of forgotten users."""
    return msgspec.structs.replace(
        e,
        users=[u for u in e.users if not forgot(u.username)],
        counts=[c for c in e.counts if not (c.username and forgot(c.username))],
        votes=[v for v in e.votes if not forgot(v.username)],
        aliases=[a for a in e.aliases if not forgot(a.username) and not forgot(a.alias)],
    )


def _validate_import(e: ev.ImportBatch) -> None:
    times = [
        *(t for u in e.users for t in (u.first_seen_us, u.last_seen_us)),
        *(m.time_us for m in e.media),
        *(p.time_us for p in e.population),
        *(v.time_us for v in e.votes),
    ]
    for us in times:
        if not 0 <= us < MAX_IMPORT_TIME_US:
            raise ValueError(f"imported time {us} us is outside 1970..2112")
    for c in e.counts:
        if c.n1 < 0 or c.n2 < 0:
            raise ValueError(f"negative count in imported row {c}")
    for v in e.votes:
        if v.vote not in (1, -1):
            raise ValueError(f"imported vote must be 1 or -1, not {v.vote}")
    for p in e.population:
        if p.connected < 0 or p.chatting < 0:
            raise ValueError(f"negative population in imported row {p}")
