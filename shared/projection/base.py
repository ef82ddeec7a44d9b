"""What every rule module of the projection shares: the State, the batch's Delta, and the
bookkeeping of users, counters, carried channel parts and forgotten users."""

from __future__ import annotations

from userstats.shared import forget
from userstats.shared.delta import Delta
from userstats.shared.keys import ChannelKey, ChannelPartKey, CounterKey
from userstats.shared.schema import COUNTER
from userstats.shared.state import State

US = 1_000_000
HOUR_US = 3600 * US
DEAD_LETTERS_KEY = CounterKey(COUNTER, "", "", "", "dead_letters", 0)
# Parts of a channel's state a kvstate event can fill in (schema.CHANNEL_PARTS), each carried
# in full by one kind of bridge frame: userlist, any emote frame, changeMedia.
ROSTER, EMOTE_SET, MEDIA = "roster", "emotes", "media"


class Rules:
    """The State and Delta the rule mixins change; Projector (dispatcher.py) combines them."""

    def __init__(self, state: State | None = None) -> None:
        self.state = state if state is not None else State()
        self.delta = Delta()
        self._dirty_chat: set[ChannelKey] = set()
        self._counts: dict[str, int] = {}
        self._users: dict[str, list[int]] = {}  # this batch's users rows (merged as USERS says)

    def _count(self, name: str, n: int = 1) -> None:
        """Bookkeeping counters, summed in memory and put into the delta by take_delta."""
        self._counts[name] = self._counts.get(name, 0) + n

    def _see_user(self, seq: int, name: str, t: int) -> None:
        row = self._users.get(name)
        if row is None:
            self._users[name] = [t, t, seq]
        else:  # first_seen and first_seq only go down, last_seen only up (as USERS merges them)
            if t > row[1]:
                row[1] = t
            elif t < row[0]:
                row[0] = t
            row[2] = min(row[2], seq)  # a PM is seen at its journal event, with the raw PM's seq
        low = name.lower()
        if low not in self.state.users_lower:
            self.state.users_lower[low] = name

    def _carried(self, key: ChannelKey, part: str) -> bool:
        """Record that the log now carries `part` of the channel; False if it already did."""
        entry = ChannelPartKey(key.domain, key.channel, part)
        if entry in self.state.known:
            return False
        self.state.known.add(entry)
        self.delta.parts.put(entry, [])
        return True

    def _forgot(self, name: str) -> bool:
        forgotten = self.state.forgotten
        return bool(forgotten) and forget.user_hash(name) in forgotten

    def _counted_user(self, seq: int, name: str) -> bool:
        """Whether an event of `name` counts: False for a missing name (counted as such) and
        for a forgotten user (see _ignored)."""
        if not name:
            self._count("events_without_username")
            return False
        return not self._ignored(seq, name)

    def _ignored(self, seq: int, name: str) -> bool:
        """True for an event of a forgotten user: not counted, and (in ingest) deleted."""
        if not self._forgot(name):
            return False
        self._count("events_forgotten")
        self.delta.forgotten_seqs.append(seq)
        return True
