"""kryten lifecycle messages (spec 6.3), so kryten-robot's service registry lists userstats.

startup on connect, on every discovery poll and on every robot startup (re-announcement);
a heartbeat every `service.heartbeat_interval` seconds; shutdown on a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.aio.client import Client
from userstats.shared import __version__, subjects
from userstats.shared.settings import Settings

log = logging.getLogger(__name__)


class Endpoint(msgspec.Struct, frozen=True):
    port: int
    path: str


class Metadata(msgspec.Struct, frozen=True):
    endpoints: dict[str, Endpoint]


class LifecycleMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    service: str
    version: str
    hostname: str
    timestamp: str
    uptime_seconds: float | None
    metadata: Metadata | None = None
    channels_configured: int | None = None
    metrics_port: int | None = None
    re_announcement: bool | None = None
    reason: str | None = None


def service_token(name: str) -> str:
    """kryten-py's normalisation of service.name for lifecycle subjects."""
    return name.strip().lower().replace(".", "-") or "userstats"


class Lifecycle:
    def __init__(self, nc: Client, settings: Settings) -> None:
        self._nc = nc
        self._settings = settings
        self._name = service_token(settings.service.name)
        self._hostname = socket.gethostname()
        self._started = time.monotonic()
        self._heartbeat: asyncio.Task[None] | None = None
        port = settings.metrics.port
        self._metadata = Metadata(
            {"health": Endpoint(port, "/health"), "metrics": Endpoint(port, "/metrics")}
        )

    def subject(self, kind: str) -> str:
        return f"{subjects.LIFECYCLE_PREFIX}.{self._name}.{kind}"

    def message(self, **extra: Any) -> bytes:
        return msgspec.json.encode(
            LifecycleMessage(
                service=self._name,
                version=__version__,
                hostname=self._hostname,
                timestamp=datetime.now(UTC).isoformat(),
                uptime_seconds=round(time.monotonic() - self._started, 4),
                metadata=self._metadata,
                **extra,
            )
        )

    async def _announce(self, msg: Any) -> None:
        await self._nc.publish(self.subject("startup"), self.message())

    async def _reannounce(self, msg: Any) -> None:
        body = self.message(
            channels_configured=len(self._settings.channels),
            metrics_port=self._settings.metrics.port,
            re_announcement=True,
        )
        await self._nc.publish(self.subject("startup"), body)

    async def _restart_request(self, msg: Any) -> None:
        log.warning(
            "group restart requested (%s): userstats replicas do not restart themselves", msg.data[:200]
        )

    async def start(self) -> None:
        if self._settings.service.enable_discovery:
            await self._nc.subscribe(subjects.DISCOVERY_POLL, cb=self._announce)
            await self._nc.subscribe(subjects.ROBOT_STARTUP, cb=self._reannounce)
        await self._nc.subscribe(subjects.GROUP_RESTART, cb=self._restart_request)
        await self._nc.publish(self.subject("startup"), self.message())
        if self._settings.service.enable_heartbeat:
            self._heartbeat = asyncio.create_task(self._beat(self._settings.service.heartbeat_interval))

    async def _beat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):  # reconnecting: the next beat will do
                await self._nc.publish(self.subject("heartbeat"), self.message())

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        with contextlib.suppress(Exception):
            await self._nc.publish(self.subject("shutdown"), self.message(reason="Normal shutdown"))
            await self._nc.flush(timeout=2)
