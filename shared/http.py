"""Serving a FastAPI app with uvicorn inside the service's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.routing import Route
from starlette.types import ASGIApp

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class PortInUseError(OSError):
    pass


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves so a busy port is a clear error, not sys.exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it a keep-alive response sent in two writes waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUseError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


class HttpServer:
    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self._sock = bind(host, port)
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._server.serve([self._sock]))
        log.info("http: listening on port %d", self.port)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()


def build_app(
    title: str, registry: CollectorRegistry, health: Callable[[], tuple[bool, dict[str, Any]]]
) -> FastAPI:
    """GET/HEAD /health (200 or 503 with the reason) and /metrics (prometheus_client's ASGI app)."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.api_route("/health", methods=["GET", "HEAD"])
    def get_health() -> JSONResponse:
        ok, body = health()
        return JSONResponse(body, status_code=200 if ok else 503)

    # A Route, not a Mount: a Mount would redirect /metrics to /metrics/.
    app.router.routes.append(Route("/metrics", endpoint=_AsgiEndpoint(make_asgi_app(registry))))
    return app


class _AsgiEndpoint:
    """Starlette treats a plain function endpoint as request->response; this marks an ASGI app."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)
