"""What the projection must remember between events, besides the statistics themselves.

Everything here is also in the tables (see schema.py "Projection state"), so ingest after a
restart and a replica after loading a snapshot rebuild exactly the same State.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from userstats.shared.detectors import DEFAULT_TRIGGER_PHRASES
from userstats.shared.keys import ChannelKey, ChannelPartKey

# A channel is keyed domain first, as the per-channel state tables are (keys.ChannelKey); the
# statistics tables put the channel first, so rules build their keys by name from it.
SERVER_USER = "[server]"
RECENT_CHAT_PER_CHANNEL = 64  # CyTube replays its last 15 lines; keep a margin.
MAX_GAP_SNAPSHOTS = 288  # at most one day of 5-minute rows for one gap in event time


@dataclass(slots=True)
class Session:
    join_us: int
    is_afk: bool
    afk_start_us: int
    afk_total_s: int


@dataclass(frozen=True, slots=True)
class Media:
    title: str
    type: str
    id: str


@dataclass(slots=True)
class ProjectionSettings:
    trigger_phrases: frozenset[str] = frozenset(DEFAULT_TRIGGER_PHRASES)
    count_shadow_muted: bool = False
    population_interval_seconds: int = 300


@dataclass(slots=True)
class RecentChat:
    """Bounded memory of the last chat lines of one channel, for backlog dedupe."""

    order: deque[tuple[int, tuple[str, int, str]]] = field(default_factory=deque)
    keys: dict[tuple[str, int, str], int] = field(default_factory=dict)


@dataclass(slots=True)
class State:
    # lower-cased username -> the spelling seen first (smallest first_seq)
    users_lower: dict[str, str] = field(default_factory=dict)
    # lower-cased alias -> {username: seq it was added at}; the smallest seq resolves
    aliases: dict[str, dict[str, int]] = field(default_factory=dict)
    emotes: dict[ChannelKey, set[str]] = field(default_factory=dict)
    current_media: dict[ChannelKey, Media] = field(default_factory=dict)
    last_media: dict[ChannelKey, Media] = field(default_factory=dict)
    sessions: dict[ChannelKey, dict[str, Session]] = field(default_factory=dict)
    afk_count: dict[ChannelKey, int] = field(default_factory=dict)
    recent_chat: dict[ChannelKey, RecentChat] = field(default_factory=dict)
    clocks: dict[ChannelKey, int] = field(default_factory=dict)  # last 5-min boundary (us)
    # parts of a channel's state the log carries ('roster', 'emotes', 'media'; schema.CHANNEL_PARTS)
    known: set[ChannelPartKey] = field(default_factory=set)
    settings: ProjectionSettings = field(default_factory=ProjectionSettings)
    # "source␟kind␟username␟channel␟domain␟item" (schema.IMPORT_BASELINES) -> the (n1, n2) imported
    baselines: dict[str, tuple[int, int]] = field(default_factory=dict)
    # shared.forget.user_hash of every forgotten user (schema.FORGOTTEN_USERS)
    forgotten: set[str] = field(default_factory=set)
    # the newest raw PM seq a "pm" journal event counted (a repeat at or below it counts nothing)
    pm_counted_through: int = 0

    def alias_owner(self, alias_lower: str) -> str | None:
        owners = self.aliases.get(alias_lower)
        if not owners:
            return None
        if len(owners) == 1:
            return next(iter(owners))
        return min(owners.items(), key=lambda kv: (kv[1], kv[0]))[0]
