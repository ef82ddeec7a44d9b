"""Connecting to NATS with the configured servers, credentials and TLS (services and CLIs).

nats-py's first connect suits neither: with `max_reconnect_attempts` 0 or below it retries
every server forever (0 means "no limit" there too), and its default error callback logs a
traceback on every attempt. So `open_connection` runs nats-py's connect as a task with a
quiet error callback and decides itself when to stop: once every server has failed at least
once and `wait` seconds have passed (wait 0: after one round), and at once when the server
refuses the credentials. Then it raises ConnectError with one line naming the servers
(never their credentials) and the last reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError
from userstats.shared.settings import NatsSettings

log = logging.getLogger(__name__)

ErrorCallback = Callable[[Exception], Awaitable[None]]


class ConnectError(Exception):
    """NATS could not be reached; the message names the servers, not the secrets."""

    def __init__(self, message: str, waited: bool = False) -> None:
        super().__init__(message)
        self.waited = waited  # it gave up because the start-up wait ran out


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


def describe(exc: BaseException | None, connect_timeout: float) -> str:
    """One short phrase for why a connection attempt failed."""
    if exc is None:
        return "no answer"
    if _refused_credentials(exc):
        return "authorization violation (check the user, password, token or credentials)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {connect_timeout:g} s (connect_timeout)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip() or type(exc).__name__
    return text.removeprefix("nats: ")


def _refused_credentials(exc: BaseException) -> bool:
    # nats-py raises a plain Error("nats: 'Authorization Violation'") during the handshake
    return isinstance(exc, AuthorizationError) or "authorization violation" in str(exc).lower()


def without_credentials(url: str) -> str:
    """nats://user:pass@host:4222 -> nats://host:4222, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]


class _Throttled:
    """Logs NATS errors after connecting: a reconnect loop fails every reconnect_time_wait,
    so the same message is logged again only after `every` seconds."""

    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self._log = logger
        self._every = every
        self._last: tuple[str, float] = ("", 0.0)

    async def __call__(self, exc: Exception) -> None:
        text = describe(exc, 0) if isinstance(exc, OSError) else str(exc)
        now = time.monotonic()
        if text != self._last[0] or now - self._last[1] >= self._every:
            self._last = (text, now)
            self._log.warning("nats: %s", text)


async def open_connection(
    opts: dict[str, Any],
    wait: float = 0.0,
    on_error: ErrorCallback | None = None,
    waiting: Callable[[str], None] | None = None,
) -> Client:
    """Connect with nats-py `opts`, giving up as the module docstring says.

    `on_error` gets the errors of the connection once it is up (default: a throttled
    warning); `waiting` is called once, with the reason, after the first failed attempt.
    """
    servers = opts["servers"] if isinstance(opts["servers"], list) else [opts["servers"]]
    shown = ", ".join(without_credentials(u) for u in servers)
    connect_timeout = float(opts.get("connect_timeout", 2))
    after = on_error or _Throttled(log)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    failures: list[BaseException] = []
    connected = False
    give_up = asyncio.Event()

    def check() -> None:
        if len(failures) >= len(servers) and loop.time() >= deadline:
            give_up.set()

    async def error_cb(exc: Exception) -> None:
        if connected:
            await after(exc)
            return
        failures.append(exc)
        if _refused_credentials(exc):
            give_up.set()  # retrying the same credentials cannot help
        if len(failures) == 1 and waiting is not None and wait > 0:
            waiting(describe(exc, connect_timeout))
        check()

    nc = Client()
    timer = loop.call_at(deadline, check)
    task = asyncio.ensure_future(nc.connect(**{**opts, "error_cb": error_cb}))
    stop = asyncio.ensure_future(give_up.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        stop.cancel()
        if not task.done():
            task.cancel()
    try:
        await task
        connected = True
        return nc
    except asyncio.CancelledError:
        if not give_up.is_set():
            raise  # we were cancelled ourselves
    except (NatsError, OSError, ssl.SSLError, TimeoutError) as exc:
        failures.append(exc)
    with contextlib.suppress(Exception):
        await nc.close()
    refused = [f for f in failures if _refused_credentials(f)]
    last = refused[0] if refused else failures[-1] if failures else None
    reason = describe(last, connect_timeout)
    within = f" within {wait:g} s" if wait > 0 and not refused else ""
    raise ConnectError(f"cannot connect to NATS at {shown}{within}: {reason}", waited=bool(within))


async def connect(s: NatsSettings, name: str, wait: float | None = None) -> Client:
    """Connect with the settings; keep trying for `wait` s (default nats.startup_wait_seconds).

    Services wait (NATS may be starting beside them); one-shot commands pass wait=0.
    """
    wait = s.startup_wait_seconds if wait is None else wait
    servers = ", ".join(without_credentials(u) for u in s.servers)

    async def on_disconnect() -> None:
        if not (nc.is_closed or nc.is_draining):
            log.warning("nats: disconnected; reconnecting")

    async def on_reconnect() -> None:
        log.info("nats: reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")

    def waiting(reason: str) -> None:
        log.info("waiting for NATS at %s (%s); trying for up to %g s", servers, reason, wait)

    opts = {**connect_options(s, name), "disconnected_cb": on_disconnect, "reconnected_cb": on_reconnect}
    try:
        nc = await open_connection(opts, wait, waiting=waiting)
    except ConnectError as exc:
        if not exc.waited:
            raise
        raise ConnectError(f"{exc} (nats.startup_wait_seconds / NATS_STARTUP_WAIT)", waited=True) from None
    # a service says so; a one-shot command has its answer to print instead
    log.log(
        logging.INFO if wait > 0 else logging.DEBUG,
        "nats: connected to %s as %s",
        nc.connected_url.netloc if nc.connected_url else "?",
        name,
    )
    return nc


def server_of(nc: Client | None) -> str | None:
    """host:port of the server a connection is on now, for /health (no credentials)."""
    if nc is None or not nc.is_connected or nc.connected_url is None:
        return None
    return nc.connected_url.netloc.rpartition("@")[2]
