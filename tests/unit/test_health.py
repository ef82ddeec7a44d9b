"""The replica's one health rule (/health and system.health), as a table."""

from __future__ import annotations

import pytest
from userstats.query.health import Condition, judge

OK = Condition(True, True, None, None, [], [])


@pytest.mark.parametrize(
    ("condition", "level", "status"),
    [
        (OK, "healthy", "healthy"),
        (OK._replace(nats_connected=False), "unhealthy", "unhealthy: not connected to NATS"),
        (OK._replace(loaded=False), "unhealthy", "unhealthy: no snapshot loaded yet"),
        (OK._replace(loaded=False, problem="no snapshot"), "unhealthy", "unhealthy: no snapshot"),
        (OK._replace(store_problems=["KV x unavailable"]), "unhealthy", "unhealthy: KV x unavailable"),
        # a store problem is not known while NATS is down: only the connection is reported
        (
            OK._replace(nats_connected=False, store_problems=["x"]),
            "unhealthy",
            "unhealthy: not connected to NATS",
        ),
        (OK._replace(problem="not following"), "degraded", "degraded: not following"),
        (OK._replace(snapshot_error="bad file"), "degraded", "degraded: bad file"),
        (OK._replace(store_warnings=["1 of 3 replicas"]), "degraded", "degraded: 1 of 3 replicas"),
    ],
)
def test_health_rule(condition: Condition, level: str, status: str) -> None:
    verdict = judge(condition)
    assert (verdict.level, verdict.status(), verdict.ok) == (level, status, level != "unhealthy")
