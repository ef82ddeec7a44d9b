"""Ingest's composition root: builds every adapter, runs the loops, stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path
from typing import Any

import prometheus_client
from nats.aio.client import Client
from nats.js import JetStreamContext

from ingest.commands import WriteCommands
from ingest.db import open_writer
from ingest.journal import Journal
from ingest.kvstate import read_channel_state
from ingest.metrics import IngestMetrics
from ingest.projector import ProjectorLoop
from ingest.snapshotter import Snapshotter
from ingest.stream_setup import ensure_stream
from shared import natsconn, schema
from shared.http import HttpServer, build_app
from shared.settings import Settings

log = logging.getLogger(__name__)


class IngestService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = IngestMetrics()
        self.stop = asyncio.Event()
        self.stream_last_seq = 0
        self.started = time.monotonic()
        self.nc: Client | None = None
        self.loop: ProjectorLoop | None = None

    def health(self) -> tuple[bool, dict[str, Any]]:
        connected = bool(self.nc and self.nc.is_connected)
        loop = self.loop
        body: dict[str, Any] = {
            "service": "userstats-ingest",
            "nats_connected": connected,
            "checkpoint_seq": loop.applied_seq if loop else None,
            "stream_last_seq": self.stream_last_seq,
            "lag_events": max(0, self.stream_last_seq - loop.applied_seq) if loop else None,
            "projection_version": schema.PROJECTION_VERSION,
            "uptime_seconds": round(time.monotonic() - self.started, 2),
        }
        problems = []
        if not connected:
            problems.append("not connected to NATS")
        if loop is None:
            problems.append("database not open yet")
        body["status"] = "healthy" if not problems else "unhealthy: " + "; ".join(problems)
        return not problems, body

    async def _watch_stream(self, js: JetStreamContext) -> None:
        stream = self.settings.userstats.stream
        while not self.stop.is_set():
            try:
                info = await js.stream_info(stream)
                self.stream_last_seq = int(info.state.last_seq)
                self.metrics.stream_last_seq.set(self.stream_last_seq)
                if self.loop is not None:
                    self.metrics.lag.set(max(0, self.stream_last_seq - self.loop.applied_seq))
            except Exception as exc:  # reported through health and metrics, retried
                log.debug("stream info: %s", exc)
            self.metrics.nats_connected.set(1 if self.nc and self.nc.is_connected else 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 1.0)

    async def run(self) -> None:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        s = self.settings
        u = s.userstats
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        http = HttpServer(
            build_app("userstats-ingest", self.metrics.registry, self.health), u.http_host, u.ingest_port
        )
        http.start()
        con = open_writer(Path(s.database.path), u.duckdb_threads)
        self.nc = nc = await natsconn.connect(s.nats, "userstats-ingest")
        try:
            js = nc.jetstream()
            info = await ensure_stream(js, u)
            self.stream_last_seq = int(info.state.last_seq)
            self.loop = projector = ProjectorLoop(
                js,
                con,
                u.stream,
                self.metrics,
                u.batch_max_events,
                u.batch_max_seconds,
                u.batch_linger_seconds,
            )
            log.info(
                "database %s at seq %d (projection version %d); stream %s holds %d..%d",
                s.database.path,
                projector.applied_seq,
                schema.PROJECTION_VERSION,
                u.stream,
                info.state.first_seq,
                info.state.last_seq,
            )
            journal = Journal(js, u.stream)
            await journal.sync_settings(s)
            for ch in s.channels:
                event = await read_channel_state(js, ch)
                if event is not None:
                    seq = await journal.append(event)
                    log.info("%s/%s: bridge KV state appended at seq %d", ch.domain, ch.channel, seq)
            commands = WriteCommands(nc, journal, projector, u.request_max_bytes)
            await commands.start()
            snapshotter = Snapshotter(
                js, con, Path(s.database.path).parent / "snapshots", self.metrics, u.snapshot_retention
            )
            tasks = [
                asyncio.create_task(projector.run(self.stop), name="projector"),
                asyncio.create_task(
                    snapshotter.run(self.stop, u.snapshot_interval_seconds, lambda: projector.applied_seq),
                    name="snapshots",
                ),
                asyncio.create_task(journal.run_ticks(self.stop, u.tick_interval_seconds), name="ticks"),
                asyncio.create_task(self._watch_stream(js), name="stream-info"),
            ]
            log.info("ingest running (HTTP %d)", http.port)
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception() is not None:
                    self.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in done:
                exc = t.exception()
                if exc is not None:
                    raise exc
            if projector.applied_seq != snapshotter.last_seq:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(snapshotter.publish(), 30)
            log.info("ingest stopped at seq %d", projector.applied_seq)
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
            con.close()
            await http.stop()
