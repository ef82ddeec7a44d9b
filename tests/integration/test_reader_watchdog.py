"""Ingest's projector restarts a stream reader that stopped delivering while the stream holds
more (issue 17: after two of three cluster nodes died and came back, the ordered consumer
sometimes never resumed, and nothing in nats-py or the reader noticed).

On a real nats-server the reader's consumer is deleted with the JetStream API. nats-py's
ordered consumer recreates a consumer whose heartbeats stop, so to stand for the case where
that recovery itself did not happen, its heartbeat monitor is stopped first: the reader is
then silent for good unless ingest's watchdog restarts it. Ingest must resume and count
every event exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import duckdb
import prometheus_client
import pytest
from nats.aio.client import Client
from userstats.ingest.metrics import IngestMetrics
from userstats.ingest.projector import ProjectorLoop
from userstats.ingest.stream_setup import ensure_stream
from userstats.shared import apply, schema
from userstats.shared.settings import UserstatsSettings
from userstats.shared.subjects import DEFAULT_STREAM
from userstats.sim.generator import Simulator

from testbed.harness import NatsServer, connect, metric, publish_all, settled, stream_last_seq, wait_for
from tests.integration.streamtools import Oracle, dump, read_stream, rebuild


async def _take_the_consumer_away(nc: Client, loop: ProjectorLoop) -> list[str]:
    """Stop nats-py's recovery of the reader's ordered consumer (its heartbeat monitor, a
    private task), then delete every consumer on the stream with the JetStream API."""
    reader = loop.reader
    assert reader is not None and reader._sub is not None
    monitor = reader._sub._sub._jsi._hbtask  # type: ignore[union-attr]
    assert monitor is not None, "the ordered consumer has a heartbeat monitor"
    monitor.cancel()
    js = nc.jetstream()
    names = [c.name for c in await js.consumers_info(DEFAULT_STREAM)]
    for name in names:
        await nc.request(f"$JS.API.CONSUMER.DELETE.{DEFAULT_STREAM}.{name}", b"", timeout=5)
    return names


async def run_and_break_the_reader(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, stall_seconds: float
) -> None:
    nc = await connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, UserstatsSettings())
    con = duckdb.connect(str(tmp_path / "ingest.duckdb"))
    apply.create_schema(con)
    metrics = IngestMetrics()
    last = 0
    stop = asyncio.Event()

    async def poll() -> None:  # what ingest's health watch does once a second
        nonlocal last
        while not stop.is_set():
            last = await stream_last_seq(nc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    loop = ProjectorLoop(
        js, con, DEFAULT_STREAM, metrics, stream_last_seq=lambda: last, stall_seconds=stall_seconds
    )
    tasks = [asyncio.create_task(poll()), asyncio.create_task(loop.run(stop))]
    sim = Simulator(seed=17)
    events = list(sim.events(6_000))
    try:
        first = await publish_all(nc, events[:3_000])
        await wait_for(lambda: loop.applied_seq >= first, timeout=60, what="ingest to project the first half")
        caplog.clear()
        deleted = await _take_the_consumer_away(nc, loop)
        assert deleted, "the reader has a consumer on the stream"
        await publish_all(nc, events[3_000:])
        second = await settled(nc, lambda: loop.applied_seq)  # with the PM journal events
        await wait_for(lambda: loop.applied_seq >= second, timeout=60, what="ingest to resume")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    try:
        assert loop.applied_seq == second == await stream_last_seq(nc)
        live = dump(con)
        assert live == dump(rebuild(await read_stream(nc)))  # every event exactly once
        counted = con.execute("SELECT sum(n1) FROM counters WHERE kind = ?", [schema.MESSAGES]).fetchone()
        assert counted is not None and counted[0] == Oracle(events).total_messages
        text = prometheus_client.generate_latest(metrics.registry).decode()
        assert metric(text, "userstats_ingest_stream_reader_restarts_total") == 1
        warnings = [
            r for r in caplog.records if r.levelno == logging.WARNING and "restarting it" in r.message
        ]
        assert len(warnings) == 1, [r.message for r in caplog.records]
    finally:
        con.close()
        await nc.close()


async def test_ingest_restarts_a_reader_whose_consumer_went_away(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await run_and_break_the_reader(nats_server, tmp_path, caplog, stall_seconds=3.0)
