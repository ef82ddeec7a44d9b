"""The HTTP JSON API: `GET /api/v1/<command>` for every read command of the NATS API.

A request goes through the same parsing and dispatch as a NATS request
(`Dispatcher.handle_fields`: `shared.requests.parse`, the reply cache, `min_seq`), so the
parameters, validation, error messages and reply envelope are the NATS ones. Only the
transport differs:

- the query string becomes the request's JSON object: `?username=X&limit=5` is
  `{"username": "X", "limit": "5"}` (numeric strings are accepted for numbers, as on NATS),
  `limits.top_users=5` is `{"limits": {"top_users": "5"}}`, an empty value is the same as
  an absent parameter (as an HTML form sends it), and `min_seq` and `timeout` are read as
  numbers; a parameter given twice is an error;
- the status code says what kind of answer it is: 200, 400 (bad request), 404 (unknown
  command), 405 (a write, or a method other than GET/HEAD), 503 (not ready, or `min_seq`
  not reached in time), 500;
- `ETag` comes from the reply's `as_of_seq` (and the snapshot generation), so
  `If-None-Match` gets a 304 while the tables the reply reflects are unchanged. Replies
  that carry the process's own figures (uptime, requests counted) have no ETag.
"""

from __future__ import annotations

import time
import zlib
from functools import lru_cache
from typing import Any, Protocol

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from userstats.query.handlers import Dispatcher, Outcome
from userstats.query.replica import Replica
from userstats.shared import messages as m
from userstats.shared import requests
from userstats.shared.commands import COMMANDS
from userstats.shared.subjects import COMMAND_SUBJECT

PREFIX = "/api/v1"
READ_COMMANDS = tuple(c.name for c in COMMANDS if not c.write)  # in the table's order
# Their replies hold uptime, request counters or the time of day: never the same twice.
LIVE_COMMANDS = frozenset(c.name for c in COMMANDS if c.cache == "live")
NUMBER_FIELDS = frozenset({"min_seq", "timeout"})  # envelope fields parse() reads as JSON numbers
STATUS = {"ok": 200, "invalid": 400, "unavailable": 503, "internal": 500}
JSON = "application/json"
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "ETag, Server-Timing",
}


class Backend(Protocol):
    """What the HTTP layer reads from the replica's composition root (QueryService)."""

    @property
    def dispatcher(self) -> Dispatcher | None: ...

    @property
    def replica(self) -> Replica | None: ...


class _Head(msgspec.Struct):
    """The envelope without its data (msgspec skips over `data` without building it)."""

    success: bool = False
    as_of_seq: int = 0


HEAD = msgspec.json.Decoder(_Head)


async def ask(backend: Backend, command: str, fields: dict[str, Any]) -> Outcome:
    """One request through the dispatcher, or a not-ready envelope before it exists."""
    d = backend.dispatcher
    if d is None:
        message = "not ready: not connected to NATS yet"
        return Outcome(m.error(command, message, 0), message, "unavailable")
    return await d.handle_fields(command, fields)


@lru_cache(maxsize=16)
def _generation_tag(generation: str) -> str:
    return f"{zlib.crc32(generation.encode()):08x}"


def etag(backend: Backend, *seqs: int) -> str:
    """A tag for content that is a function of the tables at `seqs`: a rebuilt generation may
    hold other tables at the same sequence, so its name is part of the tag."""
    r = backend.replica
    generation = r.pointer.generation if r is not None and r.pointer is not None else ""
    return '"' + ".".join(map(str, seqs)) + "-" + _generation_tag(generation) + '"'


def not_modified(request: Request, tag: str) -> bool:
    """If-None-Match (weak comparison, RFC 9110 13.1.2)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == tag for t in header.split(","))


def server_timing(started: float) -> str:
    return f"app;dur={(time.perf_counter() - started) * 1000:.2f}"


class FieldError(Exception):
    pass


def fields_from_query(items: list[tuple[str, str]]) -> dict[str, Any]:
    """The JSON object a NATS request would carry, from the query string (see the module doc)."""
    out: dict[str, Any] = {}
    for key, value in items:
        if value == "":
            continue
        parts = key.split(".")
        if not all(parts):
            raise FieldError(f"invalid parameter name {key!r}"[:300])
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FieldError(f"parameter {key} conflicts with {part}"[:300])
            node = child
        if parts[-1] in node:
            raise FieldError(f"parameter {key} given more than once"[:300])
        node[parts[-1]] = _number(value) if key in NUMBER_FIELDS else value
    return out


def _number(value: str) -> Any:
    """`min_seq=5` -> 5, `timeout=2.5` -> 2.5; anything else stays a string, so parse()
    rejects it with the NATS message (`min_seq must be a non-negative integer`)."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


class ApiFirst:
    """The ASGI app the replica serves: `/api/v1/<command>` goes straight to `Api.command`,
    everything else to the FastAPI app. The API is the hot path, and the app's middleware
    stack and its walk over every route cost more than the reply itself (a cached
    `user.stats` is built in about 0.07 ms). The same route stays in the app, so what a
    request gets does not depend on which way it went."""

    def __init__(self, api: Api, app: ASGIApp) -> None:
        self._api = api
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            command = path[len(PREFIX) + 1 :]
            if path.startswith(PREFIX + "/") and command and "/" not in command:
                scope["path_params"] = {"command": command}
                response = await self._api.command(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


class Api:
    def __init__(self, backend: Backend, max_bytes: int, headers: dict[str, str]) -> None:
        self._backend = backend
        self._max_bytes = max_bytes
        self._headers = {**headers, **CORS}

    def routes(self) -> list[Route]:
        every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        return [
            Route(PREFIX, self.index, methods=["GET", "HEAD"]),
            Route(PREFIX + "/", self.index, methods=["GET", "HEAD"]),
            Route(PREFIX + "/{command}", self.command, methods=every),
        ]

    async def index(self, request: Request) -> Response:
        body = {
            "commands": {c: f"{PREFIX}/{c}" for c in READ_COMMANDS},
            "openapi": "/openapi.json",
            "docs": "/docs",
        }
        return Response(msgspec.json.encode(body), 200, {**self._headers, "Cache-Control": "no-cache"}, JSON)

    def _error(self, status: int, command: str | None, message: str, **extra: str) -> Response:
        r = self._backend.replica
        body = m.error(command, message, r.db_seq if r is not None else 0)
        return Response(body, status, {**self._headers, "Cache-Control": "no-store", **extra}, JSON)

    async def command(self, request: Request) -> Response:
        started = time.perf_counter()
        command: str = request.path_params["command"]
        if command in requests.WRITE_COMMANDS:
            return self._error(
                405,
                command,
                f"{command} changes data: send it over NATS ({COMMAND_SUBJECT}); the HTTP API is read-only",
                Allow="",
            )
        if request.method == "OPTIONS":  # a CORS preflight (If-None-Match is not a simple header)
            headers = {
                **self._headers,
                "Allow": "GET, HEAD, OPTIONS",
                "Access-Control-Allow-Methods": "GET, HEAD",
                "Access-Control-Allow-Headers": "If-None-Match",
                "Access-Control-Max-Age": "86400",
            }
            return Response(None, 204, headers)
        if request.method not in ("GET", "HEAD"):
            message = f"{request.method} is not supported: the HTTP API answers GET (and HEAD)"
            return self._error(405, command, message, Allow="GET, HEAD, OPTIONS")
        query = request.scope.get("query_string", b"")
        if len(query) > self._max_bytes:
            return self._error(413, None, f"Request too large: {len(query)} bytes (limit {self._max_bytes})")
        try:
            fields = fields_from_query(request.query_params.multi_items())
        except FieldError as exc:
            return self._error(400, command if command in READ_COMMANDS else None, str(exc))
        outcome = await ask(self._backend, command, fields)
        status = 404 if command not in requests.COMMAND_PARAMS else STATUS[outcome.kind]
        headers = {**self._headers, "Server-Timing": server_timing(started)}
        if outcome.kind != "ok":
            headers["Cache-Control"] = "no-store"
            if status == 503:
                headers["Retry-After"] = "1"
            return Response(outcome.reply, status, headers, JSON)
        if command in LIVE_COMMANDS:
            headers["Cache-Control"] = "no-store"
            return Response(outcome.reply, 200, headers, JSON)
        tag = etag(self._backend, HEAD.decode(outcome.reply).as_of_seq)
        headers["ETag"] = tag
        headers["Cache-Control"] = "no-cache"  # may be stored, but asked again every time (304)
        if not_modified(request, tag):
            return Response(None, 304, headers)
        return Response(outcome.reply, 200, headers, JSON)
