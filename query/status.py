"""A replica's status as one value: what it serves and whether it follows the stream."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Phase(enum.Enum):
    WAITING = "waiting"  # no tables loaded yet: nothing to serve
    SERVING = "serving"  # tables loaded, not (yet) applying the stream: between a load and following
    FOLLOWING = "following"  # tables loaded and applying the stream
    PINNED = "pinned"  # a snapshot of another projection version, served as it is, never followed
    STALLED = "stalled"  # a write failed: serving what was written until the next snapshot


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """Replaced whole on every change, so a reader sees one consistent status."""

    phase: Phase
    problem: str | None = None  # why it is not following (waiting, pinned, stalled)
    snapshot_error: str | None = None  # a newer snapshot was rejected: the tables served are older

    @property
    def loaded(self) -> bool:
        return self.phase is not Phase.WAITING

    @property
    def following(self) -> bool:
        return self.phase is Phase.FOLLOWING

    @property
    def pinned(self) -> bool:
        """Serving tables it cannot project onto (the version-mismatch gauge; a stalled replica too)."""
        return self.phase in (Phase.PINNED, Phase.STALLED)


WAITING = ReplicaStatus(Phase.WAITING, problem="no snapshot loaded yet")
