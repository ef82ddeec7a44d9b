"""Connecting to NATS with the configured servers, credentials and TLS (both services)."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import nats
from nats.aio.client import Client

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


async def connect(s: NatsSettings, name: str) -> Client:
    """Connect, logging disconnects and reconnects once each (never the credentials)."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    async def on_disconnect() -> None:
        log.warning("nats: disconnected")

    async def on_reconnect() -> None:
        log.info("nats: reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")

    nc: Client = await nats.connect(
        **connect_options(s, name),
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    log.info("nats: connected to %s as %s", nc.connected_url.netloc if nc.connected_url else "?", name)
    return nc
