"""Server-rendered pages (Jinja2): the channel list, a channel, a user.

Every figure on a page comes from the same read commands the NATS API answers
(`channel.list`, `channel.all_stats`, `user.stats`), through the dispatcher and its reply
cache. A rendered page is kept per (page, `as_of_seq` of each reply), so while the tables
are unchanged a request costs the cached replies and a dictionary look-up; its ETag comes
from those sequences. A page built less than MAX_AGE ago is served as it is, and requests
for a page being built wait for it, so a busy stream costs one build per page per MAX_AGE,
not one per viewer. Templates are compiled once, at start-up, with autoescaping on:
every CyTube string (usernames, titles, emotes) is user input and reaches the page as text.
The pages work without JavaScript; with it, app.js refreshes the live sections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import jinja2
import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from userstats.query import charts
from userstats.query.api import HEAD, STATUS, Backend, ask, etag, not_modified, server_timing
from userstats.query.assets import Assets
from userstats.query.handlers import Outcome
from userstats.shared import replies as r
from userstats.shared.messages import ChannelActivityRow

T = TypeVar("T")
HTML = "text/html; charset=utf-8"
CACHE_MAX = 1000
MAX_AGE = 0.25  # seconds a built page is served as it is (app.js asks every second)


class Envelope(msgspec.Struct, Generic[T]):
    success: bool
    as_of_seq: int = 0
    data: T | None = None
    error: str | None = None


CHANNELS = msgspec.json.Decoder(Envelope[r.ChannelList])
ALL_STATS = msgspec.json.Decoder(Envelope[r.AllStats])
USER_STATS = msgspec.json.Decoder(Envelope[r.UserStats])


def path_segment(value: str) -> str:
    """A name as one URL path segment ('/' and everything else reserved is escaped)."""
    return quote(value, safe="")


def when(iso: str | None) -> str:
    if not iso:
        return "never"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: int) -> str:
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 100 else f"{hours:,} h"


def num(value: int) -> str:
    return f"{value:,}"


def per_channel(s: r.UserStats) -> list[tuple[str, int, ChannelActivityRow | None]]:
    """(channel, chat lines, time) for every channel with either, busiest first."""
    time = {a.channel: a for a in (s.all_activity if isinstance(s.all_activity, list) else [])}
    rows = [(c.channel, c.count, time.pop(c.channel, None)) for c in s.all_messages]
    rows += [(channel, 0, a) for channel, a in sorted(time.items())]
    return rows


def environment(package: str, assets: Assets) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        auto_reload=False,  # compiled once; no stat() per render
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(path=path_segment, when=when, duration=duration, num=num)
    env.globals["asset"] = assets.url
    return env


class Rendered(msgspec.Struct, frozen=True):
    status: int
    tag: str
    body: bytes


class Pages:
    def __init__(self, backend: Backend, env: jinja2.Environment, headers: dict[str, str]) -> None:
        self._backend = backend
        self._headers = headers
        self._templates = {
            name: env.get_template(f"{name}.html") for name in ("index", "channel", "user", "error")
        }
        self._cache: dict[tuple[Any, ...], Rendered] = {}  # per reply sequences
        self._built: dict[tuple[str, ...], tuple[float, Rendered]] = {}  # per page, with its time
        self._building: dict[tuple[str, ...], asyncio.Future[Rendered]] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET", "HEAD"]),
            Route("/channel/{domain}/{channel:path}", self.channel, methods=["GET", "HEAD"]),
            Route("/user", self.find_user, methods=["GET", "HEAD"]),
            Route("/user/{name:path}", self.user, methods=["GET", "HEAD"]),
        ]

    # --- plumbing ------------------------------------------------------------------------

    def _render(self, name: str, status: int, tag: str, **context: Any) -> Rendered:
        body = self._templates[name].render(etag=tag if status == 200 else "", **context)
        return Rendered(status, tag, body.encode())

    def _respond(self, request: Request, page: Rendered, started: float) -> Response:
        headers = {**self._headers, "Server-Timing": server_timing(started)}
        if page.status != 200:
            headers["Cache-Control"] = "no-store"
            if page.status == 503:
                headers["Retry-After"] = "2"
            return Response(page.body, page.status, headers, HTML)
        headers["ETag"] = page.tag
        headers["Cache-Control"] = "no-cache"
        if not_modified(request, page.tag):
            return Response(None, 304, headers)
        return Response(page.body, 200, headers, HTML)

    def _failure(self, outcome: Outcome) -> Rendered:
        status = STATUS[outcome.kind]
        return self._render("error", status, "", title="Cannot show this page", message=outcome.problem)

    async def _recent(self, ident: tuple[str, ...], make: Callable[[], Awaitable[Rendered]]) -> Rendered:
        """A page built at most MAX_AGE ago, else a new one; requests for a page being built
        wait for it. Under a busy stream every event batch is a new `as_of_seq`: without
        this, each viewer's request would recompute the page's replies."""
        hit = self._built.get(ident)
        if hit is not None and time.monotonic() - hit[0] < MAX_AGE:
            return hit[1]
        pending = self._building.get(ident)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Rendered] = asyncio.get_running_loop().create_future()
        self._building[ident] = future
        try:
            page = await make()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters, if any, raise it too
            raise
        finally:
            del self._building[ident]
        future.set_result(page)
        if page.status == 200:
            if len(self._built) >= CACHE_MAX:
                self._built.clear()
            self._built[ident] = (time.monotonic(), page)
        return page

    def _cached(self, key: tuple[Any, ...], build: Any) -> Rendered:
        page = self._cache.get(key)
        if page is None:
            page = build()
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[key] = page
        return page

    # --- pages ------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        started = time.perf_counter()
        return self._respond(request, await self._recent(("index",), self._index), started)

    async def _index(self) -> Rendered:
        listing = await ask(self._backend, "channel.list", {})
        if listing.kind != "ok":
            return self._failure(listing)
        seq = HEAD.decode(listing.reply).as_of_seq
        tag = etag(self._backend, seq)

        def build() -> Rendered:
            data = CHANNELS.decode(listing.reply).data
            assert data is not None
            return self._render("index", 200, tag, channels=data.channels, seq=seq)

        return self._cached(("index", tag), build)

    async def channel(self, request: Request) -> Response:
        started = time.perf_counter()
        domain, name = request.path_params["domain"], request.path_params["channel"]
        page = await self._recent(
            ("channel", domain.lower(), name.lower()), lambda: self._channel(domain, name)
        )
        return self._respond(request, page, started)

    async def _channel(self, domain: str, name: str) -> Rendered:
        listing = await ask(self._backend, "channel.list", {"domain": domain})
        if listing.kind != "ok":
            return self._failure(listing)
        stats = await ask(self._backend, "channel.all_stats", {"channel": name, "domain": domain})
        if stats.kind != "ok":
            return self._failure(stats)
        seqs = HEAD.decode(listing.reply).as_of_seq, HEAD.decode(stats.reply).as_of_seq
        tag = etag(self._backend, *seqs)

        def build() -> Rendered:
            channels = CHANNELS.decode(listing.reply).data
            assert channels is not None
            row = next((c for c in channels.channels if c.channel.lower() == name.lower()), None)
            if row is None:
                message = f"No channel {name} on {domain} in the statistics."
                return self._render("error", 404, tag, title="No such channel", message=message)
            data = ALL_STATS.decode(stats.reply).data
            assert data is not None
            chart = charts.population(data.channel.population.history_24h)
            return self._render("channel", 200, tag, ch=row, stats=data, chart=chart, seq=max(seqs))

        return self._cached(("channel", domain.lower(), name.lower(), tag), build)

    async def find_user(self, request: Request) -> Response:
        name = request.query_params.get("name", "").strip()
        return RedirectResponse(f"/user/{path_segment(name)}" if name else "/", 303, self._headers)

    async def user(self, request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        return self._respond(
            request, await self._recent(("user", name.lower()), lambda: self._user(name)), started
        )

    async def _user(self, name: str) -> Rendered:
        listing = await ask(self._backend, "channel.list", {})
        if listing.kind != "ok":
            return self._failure(listing)
        channels = CHANNELS.decode(listing.reply).data
        assert channels is not None
        domains = list(dict.fromkeys(c.domain for c in channels.channels)) or [""]
        outcomes = []
        for domain in domains:
            outcome = await ask(self._backend, "user.stats", {"username": name, "domain": domain or None})
            if outcome.kind != "ok":
                return self._failure(outcome)
            outcomes.append(outcome)
        seqs = [HEAD.decode(listing.reply).as_of_seq, *(HEAD.decode(o.reply).as_of_seq for o in outcomes)]
        tag = etag(self._backend, *seqs)

        def build() -> Rendered:
            found = []
            for domain, outcome in zip(domains, outcomes, strict=True):
                data = USER_STATS.decode(outcome.reply).data
                assert data is not None
                found.append((domain, data))
            if all(data.first_seen is None for _, data in found):
                message = f"No user called {name} has been seen in any channel."
                return self._render("error", 404, tag, title="No such user", message=message)
            # the figures of each domain the user has any in (PMs, aliases and first and
            # last seen are the same in every domain's reply)
            per_domain = [
                (d, s, per_channel(s))
                for d, s in found
                if s.all_messages or s.all_activity or s.kudos_plusplus or s.kudos_phrases
            ]
            user = found[0][1]
            return self._render("user", 200, tag, user=user, domains=per_domain, seq=max(seqs))

        return self._cached(("user", name.lower(), tag), build)
