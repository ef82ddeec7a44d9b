"""The replica's status as one value, and its health, judged by one rule for both /health and
the system.health command.

Unhealthy (HTTP 503): not connected to NATS, no tables loaded, or a JetStream store this
replica needs is unusable. Degraded (still serving): not following the stream, the newest
snapshot failed to load (the previous one is served), or a store works with fewer replicas
than configured. /health shows the level with its reasons ("degraded: ..."); system.health
shows the level alone, as kryten-userstats 0.7.1 did.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple


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


HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"


class Condition(NamedTuple):
    """What the rule reads, gathered by the service from its adapters."""

    nats_connected: bool
    loaded: bool
    problem: str | None  # the replica's: why it does not load or follow
    snapshot_error: str | None  # the newest snapshot failed to load
    store_problems: list[str]
    store_warnings: list[str]


class Verdict(NamedTuple):
    level: str
    reasons: list[str]

    @property
    def ok(self) -> bool:
        return self.level != UNHEALTHY

    def status(self) -> str:
        """The level with its reasons: /health's `status`."""
        return self.level if not self.reasons else f"{self.level}: {'; '.join(self.reasons)}"


def judge(c: Condition) -> Verdict:
    problems = []
    if not c.nats_connected:
        problems.append("not connected to NATS")
    if not c.loaded:
        problems.append(c.problem or "no snapshot loaded yet")
    if c.nats_connected:
        problems += c.store_problems
    if problems:
        return Verdict(UNHEALTHY, problems)
    if c.problem:
        return Verdict(DEGRADED, [c.problem])  # serving, but not following the stream
    if c.snapshot_error:
        return Verdict(DEGRADED, [c.snapshot_error])  # serving the previous snapshot
    if c.store_warnings:
        return Verdict(DEGRADED, list(c.store_warnings))  # a store works with fewer replicas
    return Verdict(HEALTHY, [])
