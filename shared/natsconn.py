"""Connecting to NATS with the configured servers, credentials and TLS (both services)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

from shared.settings import NatsSettings

log = logging.getLogger(__name__)


def tls_context(s: NatsSettings) -> ssl.SSLContext | None:
    if not (s.tls_ca or s.tls_cert):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=s.tls_ca)
    if s.tls_cert:
        ctx.load_cert_chain(s.tls_cert, s.tls_key)
    return ctx


def connect_options(s: NatsSettings, name: str) -> dict[str, Any]:
    """Keyword arguments for nats.connect(); no I/O."""
    opts: dict[str, Any] = {
        "servers": s.servers,
        "name": name,
        "connect_timeout": s.connect_timeout,
        "reconnect_time_wait": s.reconnect_time_wait,
        "max_reconnect_attempts": s.max_reconnect_attempts,
        "ping_interval": s.ping_interval,
        "allow_reconnect": True,
        "dont_randomize": not s.randomize,
    }
    if s.user:
        opts["user"] = s.user
        opts["password"] = s.password or ""
    if s.token:
        opts["token"] = s.token
    if s.creds:
        opts["user_credentials"] = s.creds
    if s.nkey_seed:
        opts["nkeys_seed"] = s.nkey_seed
    ctx = tls_context(s)
    if ctx is not None:
        opts["tls"] = ctx
    return opts


class ConnectError(Exception):
    """NATS could not be reached at start-up; the message names the servers, not the secrets."""


async def connect(s: NatsSettings, name: str) -> Client:
    """Connect, logging disconnects and reconnects (never the credentials)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    async def on_disconnect() -> None:
        if not (nc.is_closed or nc.is_draining):
            log.warning("nats: disconnected; reconnecting")

    async def on_reconnect() -> None:
        log.info("nats: reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")

    servers = ", ".join(_without_credentials(u) for u in s.servers)
    try:
        # With unlimited reconnects the library keeps retrying the first connect too:
        # good while NATS is starting, confusing with a wrong URL. So: bounded.
        nc: Client = await asyncio.wait_for(
            nats.connect(
                **connect_options(s, name),
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            ),
            timeout=max(s.startup_wait_seconds, s.connect_timeout),
        )
    except TimeoutError as exc:
        raise ConnectError(
            f"cannot connect to NATS at {servers} within {s.startup_wait_seconds:g} s "
            "(nats.startup_wait_seconds / NATS_STARTUP_WAIT)"
        ) from exc
    except (NatsError, OSError, ssl.SSLError) as exc:
        raise ConnectError(f"cannot connect to NATS at {servers}: {type(exc).__name__}: {exc}") from exc
    log.info("nats: connected to %s as %s", nc.connected_url.netloc if nc.connected_url else "?", name)
    return nc


def server_of(nc: Client | None) -> str | None:
    """host:port of the server a connection is on now, for /health (no credentials)."""
    if nc is None or not nc.is_connected or nc.connected_url is None:
        return None
    return nc.connected_url.netloc.rpartition("@")[2]


def _without_credentials(url: str) -> str:
    """nats://user:pass@host:4222 -> nats://host:4222, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]
