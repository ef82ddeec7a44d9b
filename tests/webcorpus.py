"""A small known log for the HTTP API and page tests, with hostile strings in it.

CyTube strings are user input: these usernames and this media title carry markup that
would run if a page ever put them into HTML unescaped (each sets `window.__xss`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from testbed.harness import NatsServer, Service, Stack, connect, publish_all, stream_last_seq
from tests.projection_helpers import Log

ROOM = "TestRoom"
OTHER = "OtherRoom"
XSS_USER = "<script>window.__xss=1</script>"
XSS_USER2 = '"><img src=x onerror="window.__xss=2">'
XSS_TITLE = '<script>window.__xss=3</script>"><img src=x onerror=window.__xss=4>'
# Recent, on the hour: windows (the 24-hour chart) end at the newest event time, and
# ingest's own journal events carry the wall clock.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def corpus() -> Log:
    log = (
        Log(BASE)
        .at(0)
        .emotes(["#Kappa", "#PogChamp"], channel=ROOM)
        .media("Carnival of Souls", "cs", channel=ROOM)
    )
    log.at(1).join("alice", ROOM).join("bob", ROOM).join(XSS_USER, ROOM).join(XSS_USER2, ROOM)
    for i in range(12):  # an hour: 12 population snapshots for the chart
        t = 10 + i * 300
        log.at(t).chat("alice", f"hello {i} #Kappa", ROOM)
        if i % 2:
            log.at(t + 1).chat("bob", "++alice nice one", ROOM)
        if i % 3 == 0:
            log.at(t + 2).chat(XSS_USER, "lol bob #PogChamp", ROOM)
    log.at(3700).chat(XSS_USER2, "hi all #PogChamp", ROOM)
    log.at(3710).media(XSS_TITLE, "x1", channel=ROOM)
    log.at(3720).chat("alice", "movie++", ROOM).chat("bob", "movie--", ROOM).chat(XSS_USER, "film+", ROOM)
    log.at(3730).join("carol", OTHER).chat("carol", "anyone here?", OTHER)
    return log.at(3800).tick()


@dataclass
class Live:
    stack: Stack
    query: Service
    url: str  # the replica's HTTP root

    def ask(self, command: str, **params: Any) -> dict[str, Any]:
        """The NATS reply (the whole envelope) to a read command."""
        return asyncio.run(_request(self.stack.nats.url, {"command": command, **params}))

    def publish(self, log: Log) -> int:
        """Publish the log's events; the stream's last sequence once the replica has it."""
        return asyncio.run(_publish(self.stack.nats.url, log))[0]

    def publish_timed(self, log: Log) -> float:
        """As publish(); returns time.monotonic() of the moment the events were sent."""
        return asyncio.run(_publish(self.stack.nats.url, log))[1]


async def _request(url: str, body: dict[str, Any]) -> dict[str, Any]:
    nc = await connect(url)
    try:
        msg = await nc.request("kryten.userstats.command", json.dumps(body).encode(), timeout=10)
        reply: dict[str, Any] = json.loads(msg.data)
        return reply
    finally:
        await nc.close()


async def _publish(url: str, log: Log) -> tuple[int, float]:
    nc = await connect(url)
    try:
        sent = time.monotonic()
        await publish_all(nc, [(s, d) for s, d, _ in log.messages])
        last = await stream_last_seq(nc)
        msg = await nc.request(
            "kryten.userstats.command", json.dumps({"command": "system.stats", "min_seq": last}).encode(), 30
        )
        assert json.loads(msg.data)["success"], msg.data
        return last, sent
    finally:
        await nc.close()


@contextmanager
def live_stack(tmp: Path, **query_env: str) -> Iterator[Live]:
    """nats-server, ingest and one replica holding `corpus()`."""
    server = NatsServer(tmp / "nats-store")
    server.start()
    stack = Stack(tmp, server)
    try:
        stack.ingest().wait_healthy()
        query = stack.query(**query_env)
        live = Live(stack, query, f"http://127.0.0.1:{query.port}")
        query.wait_healthy()
        live.publish(corpus())
        yield live
    finally:
        stack.stop_all()
        server.stop()
