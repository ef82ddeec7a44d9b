"""The replica's composition root: NATS, the private copy, request handling, HTTP.

Every HTML response carries a Content-Security-Policy that allows scripts, styles and
connections from this origin only: no inline script or style, no plugin, no framing, so
even a string that escaped the templates' autoescaping could not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path
from typing import Any

import prometheus_client
from fastapi import FastAPI
from nats.aio.client import Client
from starlette.types import ASGIApp
from userstats.query import health
from userstats.query.api import Api, ApiFirst, Backend
from userstats.query.assets import Assets
from userstats.query.endpoints import Endpoints
from userstats.query.handlers import Dispatcher
from userstats.query.health import ReplicaStatus
from userstats.query.lifecycle import Lifecycle
from userstats.query.metrics import QueryMetrics, spec_totals
from userstats.query.openapi import Docs
from userstats.query.pages import Pages, environment
from userstats.query.replica import Replica
from userstats.shared import jshealth, natsconn, snapshots, subjects
from userstats.shared.http import HttpServer, build_app
from userstats.shared.settings import Settings

log = logging.getLogger(__name__)

PACKAGE = __name__.rpartition(".")[0]
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def install_web(app: FastAPI, backend: Backend, settings: Settings) -> ASGIApp:
    """Add the API and /docs, and the pages unless `userstats.web_pages` is off; returns the
    app to serve (the API's requests skip the app's routing, see ApiFirst)."""
    u = settings.userstats
    assets = Assets(PACKAGE, HEADERS)
    env = environment(PACKAGE, assets)
    api = Api(backend, u.request_max_bytes, HEADERS)
    routes = [*api.routes(), *Docs(env, HEADERS).routes()]
    routes += assets.routes()  # /docs uses the stylesheet too
    if u.web_pages:
        routes += Pages(backend, env, HEADERS).routes()
    app.router.routes.extend(routes)
    return ApiFirst(api, app)


class QueryService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.started = time.monotonic()
        self.nc: Client | None = None
        self.replica: Replica | None = None
        self.dispatcher: Dispatcher | None = None
        self.metrics = QueryMetrics(self._status)
        self._first_load = asyncio.Event()
        self.stores: jshealth.StoreWatch | None = None

    def _status(self) -> tuple[float, bool, bool]:
        return (
            time.monotonic() - self.started,
            bool(self.nc and self.nc.is_connected),
            bool(self.replica and self.replica.loaded),
        )

    def condition(self, st: ReplicaStatus | None) -> health.Condition:
        connected = bool(self.nc and self.nc.is_connected)
        return health.Condition(
            nats_connected=connected,
            loaded=bool(st and st.loaded),
            problem=st.problem if st else None,
            snapshot_error=st.snapshot_error if st else None,
            store_problems=self.stores.problems() if self.stores else [],
            store_warnings=self.stores.warnings() if self.stores and connected else [],
        )

    def health(self) -> tuple[bool, dict[str, Any]]:
        r = self.replica
        st = r.status if r is not None else None  # one reading: a consistent status
        verdict = health.judge(self.condition(st))
        connected = bool(self.nc and self.nc.is_connected)
        status = verdict.status()
        ok = verdict.ok
        body: dict[str, Any] = {
            "service": "userstats",
            "status": status,
            "uptime_seconds": round(time.monotonic() - self.started, 2),
            "nats_connected": connected,
            "nats_server": natsconn.server_of(self.nc),
            "jetstream": self.stores.as_dict() if self.stores else {},
            "database": "connected" if st and st.loaded else "not_initialized",
            "as_of_seq": r.applied_seq if r else 0,
            "following": bool(st and st.following),
            "snapshot_seq": r.pointer.seq if r and r.pointer else None,
            "snapshot_error": st.snapshot_error if st else None,
            "channels_configured": len(self.settings.channels),
        }
        return ok, body

    async def _refresh_metrics(self) -> None:
        """Recompute the spec's gauges on the database thread, at most once a second."""
        seen = -1
        m = self.metrics
        while not self.stop.is_set():
            r, d = self.replica, self.dispatcher
            if r is not None and d is not None and r.loaded and r.applied_seq != seen:
                try:
                    seq = r.applied_seq  # before reading: more may be applied meanwhile
                    totals = await r.read(d.totals_now, need_seq=seq)
                    m.spec.totals = spec_totals(totals)
                    m.dead_letters.set(totals["dead_letters"])
                    m.spec.dashboard = await r.read(d.dashboard_now)
                    seen = seq
                except Exception as exc:  # e.g. a snapshot swap mid-read: the next round retries
                    log.warning("metrics refresh failed: %s", exc)
            if r is not None:
                # The sequence the totals and dashboard figures beside it were read at: the
                # replica may have applied more since (its replies say so in their as_of_seq).
                m.as_of_seq.set(max(seen, 0))
                m.follow_lag.set(r.stream_pending)
                st = r.status
                m.following.set(1 if st.following else 0)
                m.version_mismatch.set(1 if st.pinned else 0)
                m.snapshot_failures.set(r.snapshot_failures)
                if r.pointer is not None:
                    m.snapshot_age.set(max(0.0, time.time() - r.loaded_at))
            # at most once a second, but at once after the first snapshot is loaded
            self._first_load.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_load.wait() if seen < 0 else self.stop.wait(), 1.0)

    async def run(self) -> None:
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        s = self.settings
        u = s.userstats
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        if u.replica_dir:
            try:
                await asyncio.to_thread(Path(u.replica_dir).mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                raise SystemExit(f"userstats.replica_dir: cannot create {u.replica_dir} ({exc})") from None
        app = build_app("userstats-query", self.metrics.registry, self.health)
        http = HttpServer(install_web(app, self, s), u.http_host, s.metrics.port)
        http.start()
        self.nc = nc = await natsconn.connect(s.nats, "userstats-query")
        self.stores = jshealth.StoreWatch(
            nc,
            {"stream": u.stream, "pointer": snapshots.POINTER_STREAM, "snapshots": snapshots.SNAPSHOT_STREAM},
            self.metrics.registry,
            "userstats_query",
        )
        self.replica = replica = Replica(nc.jetstream(), u.stream, u.replica_dir, u.duckdb_threads)
        replica.gate.listeners.append(self._first_load.set)
        self.dispatcher = dispatcher = Dispatcher(
            nc, replica, s, self.metrics, lambda: self.condition(replica.status)
        )
        endpoints = Endpoints(nc, dispatcher, s.metrics.port)
        await endpoints.start()
        lifecycle = Lifecycle(nc, s)
        await lifecycle.start()
        background = [
            asyncio.create_task(replica.run(self.stop), name="snapshots"),
            asyncio.create_task(self._refresh_metrics(), name="metrics"),
            asyncio.create_task(self.stores.run(self.stop), name="jetstream-health"),
        ]
        log.info(
            "query replica serving %s and %s.> (HTTP %d)",
            subjects.COMMAND_SUBJECT,
            subjects.SEED_PREFIX,
            http.port,
        )
        try:
            await self.stop.wait()
        finally:
            log.info("query replica stopping")
            await endpoints.stop()
            await lifecycle.stop()
            for t in background:
                t.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await replica.close()
            with contextlib.suppress(Exception):
                await nc.drain()
            await http.stop()
