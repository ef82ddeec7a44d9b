"""Forgetting a user (journal "forget" events, user.forget): the State and this batch's
pending rows lose every row naming the user (apply purges the tables), and the user's later
events are ignored (base.Rules._ignored)."""

from __future__ import annotations

from collections import deque

from userstats.shared import events as ev
from userstats.shared import forget
from userstats.shared.keys import KEY_TYPES, BaselineKey, ForgottenKey, key_fields
from userstats.shared.projection.base import Rules
from userstats.shared.schema import BASELINE_SEP, DEAD_LETTERS, USERNAME_COLUMNS


def _username_positions() -> dict[str, tuple[int, ...]]:
    """The key positions holding a username, per table (what a forget removes from a pending
    batch): the schema's username columns that are key columns (import_baselines holds the
    username inside its one key column: see _BASELINE_USERNAME)."""
    positions: dict[str, tuple[int, ...]] = {}
    for table, column in USERNAME_COLUMNS:
        fields = key_fields(KEY_TYPES[table])
        if column in fields:
            positions[table] = (*positions.get(table, ()), fields.index(column))
    return positions


_NAME_KEYS = _username_positions()
_BASELINE_USERNAME = 2  # the part of an import_baselines key holding the username
_DEAD_RAW = [c.name for c in DEAD_LETTERS.values].index("raw")  # a dead letter's raw bytes


class ForgetRules(Rules):
    def _forget(self, seq: int, e: ev.Forget) -> None:
        """Remove every row naming the user (apply purges the tables by hash, here the State
        and this batch's pending rows), and from now on ignore the user."""
        h = e.user_hash
        st = self.state
        hashes = {h}
        hit = forget.user_hash
        st.forgotten.add(h)
        self.delta.forgotten.put(ForgottenKey(h), [seq])
        self.delta.forget.add(h)
        for low in [n for n in st.users_lower if hit(n) == h]:
            del st.users_lower[low]
        for alias in list(st.aliases):
            owners = st.aliases[alias]
            if hit(alias) == h:
                del st.aliases[alias]
                continue
            for owner in [o for o in owners if hit(o) == h]:
                del owners[owner]
            if not owners:
                del st.aliases[alias]
        for key, chan in st.sessions.items():
            for name in [n for n in chan if hit(n) == h]:
                if chan.pop(name).is_afk:
                    st.afk_count[key] -= 1
        for key, recent in st.recent_chat.items():  # the user's lines go, others' lose the name
            kept = [
                (s, (name, time_ms, forget.scrub(text, hashes)))
                for s, (name, time_ms, text) in recent.order
                if hit(name) != h
            ]
            if kept != list(recent.order):
                recent.order = deque(kept)
                recent.keys = {line: s for s, line in kept}
                self._dirty_chat.add(key)
        for base_key in [k for k in st.baselines if hit(k.split(BASELINE_SEP)[_BASELINE_USERNAME]) == h]:
            del st.baselines[base_key]
            self.delta.baselines.upserts.pop(BaselineKey(base_key), None)
        for name in [n for n in self._users if hit(n) == h]:
            del self._users[name]
        dead = self.delta.dead_letters
        for k in [k for k, v in dead.upserts.items() if any(hit(w) == h for w in forget.words(v[_DEAD_RAW]))]:
            dead.delete(k)
        held = self.delta.pm_erase  # raw PMs of this batch not yet counted: never counted now
        for pm in [pm for pm, v in held.upserts.items() if v[0] and hit(v[0]) == h]:
            held.delete(pm)
        for table, positions in _NAME_KEYS.items():
            td = self.delta.tables[table]
            for k in [k for k in td.upserts if any(k[i] and hit(k[i]) == h for i in positions)]:
                td.delete(k)  # a row of this batch; the purge deletes what the tables hold
        self._count("users_forgotten")
