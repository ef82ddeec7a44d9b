"""Ingest's composition root: builds every adapter, runs the loops, stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path
from typing import Any

import duckdb
import prometheus_client
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from userstats.ingest import startup
from userstats.ingest.admin import answer_admin
from userstats.ingest.commands import WriteCommands
from userstats.ingest.db import WriterDatabase
from userstats.ingest.eraser import Eraser
from userstats.ingest.journal import Journal
from userstats.ingest.metrics import IngestMetrics
from userstats.ingest.projector import ProjectorLoop
from userstats.ingest.snapshotter import Snapshotter
from userstats.ingest.stream_setup import ensure_stream
from userstats.shared import jshealth, natsconn, replication, schema, snapshots
from userstats.shared.http import HttpServer, build_app
from userstats.shared.settings import Settings
from userstats.shared.subjects import INGEST_ADMIN_SUBJECT, STREAM_SUBJECTS

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
        self._swap: tuple[Path, asyncio.Future[int]] | None = None
        self._epoch_end = asyncio.Event()
        self.stores: jshealth.StoreWatch | None = None
        self.live = Path(settings.database.path).expanduser().resolve()
        self.db = WriterDatabase(self.live, settings.userstats.duckdb_threads)
        self.eraser: Eraser | None = None

    def positions(self) -> tuple[int | None, int, int | None]:
        """(checkpoint, stream last seq, lag), the same in /health and /metrics.

        The stream's last seq is polled once a second, so it can trail a checkpoint just
        committed; the stream holds at least what was projected from it."""
        loop = self.loop
        checkpoint = loop.applied_seq if loop else None
        last = max(self.stream_last_seq, checkpoint or 0)
        return checkpoint, last, (last - checkpoint if checkpoint is not None else None)

    def health(self) -> tuple[bool, dict[str, Any]]:
        connected = bool(self.nc and self.nc.is_connected)
        loop = self.loop
        checkpoint, last, lag = self.positions()
        body: dict[str, Any] = {
            "service": "userstats-ingest",
            "nats_connected": connected,
            "checkpoint_seq": checkpoint,
            "stream_last_seq": last,
            "lag_events": lag,
            "raw_pms_to_delete": loop.pms.pending if loop else None,
            "projection_version": schema.PROJECTION_VERSION,
            "uptime_seconds": round(time.monotonic() - self.started, 2),
            "nats_server": natsconn.server_of(self.nc),
            "jetstream": self.stores.as_dict() if self.stores else {},
        }
        problems = []
        if not connected:
            problems.append("not connected to NATS")
        elif self.stores is not None:
            problems += self.stores.problems()
        if loop is None:
            problems.append("database not open yet")
        elif loop.write_error:
            problems.append(f"cannot write the tables ({loop.write_error}); retrying")
        replaced = self.db.replaced_problem()
        if replaced:
            problems.append(replaced)
        body["write_error"] = loop.write_error if loop else None
        warnings = self.stores.warnings() if self.stores and connected else []
        if problems:
            body["status"] = "unhealthy: " + "; ".join(problems)
        else:
            body["status"] = "degraded: " + "; ".join(warnings) if warnings else "healthy"
        return not problems, body

    async def _watch_stream(self, stores: jshealth.StoreWatch) -> None:
        """Probe the stream, the KV and the Object Store each second (health and metrics)."""
        while not self.stop.is_set():
            await stores.check()
            last = stores.states["stream"].last_seq
            if last is not None:
                self.stream_last_seq = last
            self.metrics.nats_connected.set(1 if self.nc and self.nc.is_connected else 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 1.0)

    async def run(self) -> None:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        m = self.metrics
        m.checkpoint_seq.set_function(lambda: self.positions()[0] or 0)
        m.stream_last_seq.set_function(lambda: self.positions()[1])
        m.lag.set_function(lambda: self.positions()[2] or 0)
        s = self.settings
        u = s.userstats
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        http = HttpServer(
            build_app("userstats-ingest", self.metrics.registry, self.health), u.http_host, u.ingest_port
        )
        http.start()
        live = self.live
        self.db.open()
        self.nc = nc = await natsconn.connect(s.nats, "userstats-ingest")
        try:
            js = nc.jetstream()
            info = await jshealth.until_available(lambda: ensure_stream(js, u), s.nats.startup_wait_seconds)
            self.stream_last_seq = int(info.state.last_seq)
            await jshealth.until_available(
                lambda: snapshots.ensure_buckets(
                    js, replication.for_store(u, "pointer"), replication.for_store(u, "snapshots")
                ),
                s.nats.startup_wait_seconds,
            )
            self.stores = jshealth.StoreWatch(
                nc,
                {
                    "stream": u.stream,
                    "pointer": snapshots.POINTER_STREAM,
                    "snapshots": snapshots.SNAPSHOT_STREAM,
                },
                self.metrics.registry,
                "userstats_ingest",
            )
            m.projected_through = await startup.catch_up(js, self.db, s, info)
            journal = Journal(js, u.stream)
            await startup.append_start_events(js, journal, s)
            self.eraser = Eraser(js, u.stream, STREAM_SUBJECTS)
            commands = WriteCommands(nc, journal, self._projector, u.request_max_bytes, self.eraser)
            await commands.start()
            admin = await nc.subscribe(INGEST_ADMIN_SUBJECT, cb=self._on_admin)
            background = [
                asyncio.create_task(journal.run_ticks(self.stop, u.tick_interval_seconds), name="ticks"),
                asyncio.create_task(self._watch_stream(self.stores), name="stream-info"),
                asyncio.create_task(self.eraser.run(self.stop), name="eraser"),
            ]
            log.info("ingest running (HTTP %d)", http.port)
            try:
                while not self.stop.is_set():
                    await self._epoch(js, live)
            finally:
                await admin.unsubscribe()
                self.stop.set()
                await asyncio.gather(*background, return_exceptions=True)
            log.info("ingest stopped at seq %d", self.loop.applied_seq if self.loop else 0)
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
            self.db.close()
            await http.stop()

    def _projector(self) -> ProjectorLoop:
        assert self.loop is not None
        return self.loop

    async def _epoch(self, js: JetStreamContext, live: Path) -> None:
        """Project and snapshot one database until stopped, or until a rebuild is swapped in."""
        u = self.settings.userstats
        self.loop = projector = ProjectorLoop(
            js,
            self.db.con,
            u.stream,
            self.metrics,
            u.batch_max_events,
            u.batch_max_seconds,
            u.batch_linger_seconds,
            self.eraser.delete_later if self.eraser else None,
            lambda: self.stream_last_seq,
        )
        snapshotter = Snapshotter(
            js,
            self.db.con,
            live.parent / "snapshots",
            self.metrics,
            u.snapshot_retention,
            (replication.for_store(u, "pointer"), replication.for_store(u, "snapshots")),
        )
        self._epoch_end = epoch_end = asyncio.Event()
        stop_watch = asyncio.create_task(self._end_epoch_on_stop(epoch_end))
        tasks = [
            asyncio.create_task(projector.run(epoch_end), name="projector"),
            asyncio.create_task(
                snapshotter.run(epoch_end, u.snapshot_interval_seconds, lambda: projector.applied_seq),
                name="snapshots",
            ),
        ]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if any(t.exception() is not None for t in done):
            self.stop.set()
            epoch_end.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        stop_watch.cancel()
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc
        swap = self._swap
        if swap is None:
            if projector.applied_seq != snapshotter.last_seq:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(snapshotter.publish(), 30)
            return
        path, done_future = swap
        self._swap = None
        try:
            cp = self.db.swap(path)
            log.info("rebuilt database swapped in at seq %d (generation %s)", cp.seq, cp.generation)
            done_future.set_result(cp.seq)
        except Exception as exc:
            if not self.db.is_open:
                self.db.open()
            done_future.set_exception(exc)

    async def _end_epoch_on_stop(self, epoch_end: asyncio.Event) -> None:
        await self.stop.wait()
        epoch_end.set()

    async def _on_admin(self, msg: Msg) -> None:
        reply = await self.admin(msg.data)
        if msg.reply:
            await msg.respond(reply)

    async def admin(self, data: bytes) -> bytes:
        """Maintenance requests from `userstats-ingest rebuild` / `dead-letters` on this host."""
        return await answer_admin(
            data, lambda: self.loop.applied_seq if self.loop else 0, self.live, self._cursor, self._swap_in
        )

    async def _swap_in(self, path: Path) -> int:
        """End the running epoch and swap `path` in between two batches; the seq it is at."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._swap = (path, future)
        self._epoch_end.set()
        return await asyncio.wait_for(future, 120)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        return self.db.con.cursor()
