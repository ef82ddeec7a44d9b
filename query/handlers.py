"""From request bytes to reply bytes: decode, route, wait for min_seq, read or forward.

Bad input of any kind becomes the spec's error envelope; nothing raises out of `handle`.
The user.* reads (and alias.get) are answered from the replica's read model, on the event
loop; every other read from the tables, on a reader thread (query/replica.py). Replies are
cached in one ReplyCache (query/replycache.py) with what each was computed from.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from userstats.query import health, reads
from userstats.query.metrics import QueryMetrics
from userstats.query.model import ModelUsers, ReadModel
from userstats.query.replica import Committed, Replica
from userstats.query.replycache import Entry, ReplyCache
from userstats.shared import __version__, commands, requests
from userstats.shared import messages as m
from userstats.shared import replies as r
from userstats.shared.settings import Settings
from userstats.shared.subjects import INGEST_COMMAND_SUBJECT, SEED_PREFIX

log = logging.getLogger(__name__)

Read = Callable[[reads.Scope, Any], Any]

# Each table read's function, by the naming rule of shared/commands.py (user.stats ->
# reads.user_stats); a declared read without its function fails here, at import.
READS: dict[str, Read] = {name: getattr(reads, name.replace(".", "_")) for name in commands.TABLE_READS}
LIVE = frozenset(c.name for c in commands.COMMANDS if c.cache == "live" and not c.write)
# A live command's reply from (its parameters, its cache key, the seq it must reflect).
Live = Callable[[Any, bytes, int], Awaitable[bytes]]
WRITE_TIMEOUT = 15.0
# channel.all_stats is cached as the bytes around its system part (fresh in every reply)
_SYSTEM_KEY, _SYSTEM_MARK = b'"system":', b"@@SYSTEM@@"


def _quiet(f: asyncio.Future[Any]) -> None:
    """A background refresh's failure: the next request reads again (and sees the error)."""
    if not f.cancelled() and f.exception() is not None:
        log.warning("background refresh failed: %s", f.exception())


class Unavailable(m.RequestError):
    """This replica cannot answer yet (no tables, or `min_seq` not reached in time); another
    replica or a retry may."""


class Outcome(NamedTuple):
    reply: bytes
    problem: str | None  # the error message when `reply` is an error envelope
    kind: str  # "ok", "invalid" (bad request), "unavailable" (Unavailable) or "internal"


class Dispatcher:
    def __init__(
        self,
        nc: Client,
        replica: Replica,
        settings: Settings,
        metrics: QueryMetrics,
        condition: Callable[[], health.Condition],
    ) -> None:
        self._nc = nc
        self._condition = condition
        self._replica = replica
        self._settings = settings
        self._metrics = metrics
        self._max_bytes = settings.userstats.request_max_bytes
        self.commands_processed = 0
        self.started = time.monotonic()
        self._cache = ReplyCache(metrics.cache_hits.inc)
        self._totals: tuple[int, dict[str, int]] = (-1, {})
        self._floor = 0  # the highest min_seq asked: no reply older than it is served stale
        self._hostname = socket.gethostname()
        self._seen_default: tuple[int, int, str] = (-1, -1, "")  # epoch, seq, domain
        # the commands whose reply is built here, fresh each time (cache "live" in the table)
        self._live: dict[str, Live] = {
            "system.ping": self._ping_reply,
            "system.health": self._health_reply,
            "system.stats": self._system_stats,
            "channel.all_stats": self._all_stats,
        }
        assert set(self._live) == LIVE, set(self._live) ^ LIVE

    # --- entry point -------------------------------------------------------------------

    async def handle(self, subject: str, data: bytes) -> tuple[bytes, str | None]:
        """The reply, and the error message when the reply is an error envelope."""
        outcome = await self._answer(subject, lambda: self._decode(subject, data))
        return outcome.reply, outcome.problem

    async def handle_fields(self, command: str, fields: dict[str, Any]) -> Outcome:
        """A request that arrived without a NATS body (the HTTP API): `fields` are what the
        body's JSON object would hold, `command` comes from the path. Same parsing and
        dispatch as `handle`; the outcome also says what kind of failure an error was."""

        def decode() -> requests.Request:
            self.commands_processed += 1
            return requests.parse(fields, command=command)

        return await self._answer(f"http {command}", decode)

    async def _answer(self, where: str, decode: Callable[[], requests.Request]) -> Outcome:
        started = time.perf_counter()
        command = "invalid"
        problem: str | None = None
        kind = "ok"
        try:
            req = decode()
            command = req.command
            reply = await self._execute(req)
        except m.RequestError as exc:
            if exc.command and exc.command in requests.COMMAND_PARAMS:
                command = exc.command
            problem = exc.message
            kind = "unavailable" if isinstance(exc, Unavailable) else "invalid"
            # once the command was read, its error reply names it (spec 4.2)
            known = exc.command or (command if command != "invalid" else None)
            reply = m.error(known, exc.message, self._replica.db_seq)
        except Exception:
            log.exception("request on %s failed", where)
            problem, kind = "Internal error", "internal"
            reply = m.error(command if command != "invalid" else None, problem, self._replica.db_seq)
        self._metrics.requests.labels(command, "error" if problem else "ok").inc()
        self._metrics.latency.labels(command).observe(time.perf_counter() - started)
        return Outcome(reply, problem, kind)

    def _decode(self, subject: str, data: bytes) -> requests.Request:
        if subject.startswith(SEED_PREFIX + "."):
            domain, query_type = requests.seed_route(subject, SEED_PREFIX)
            obj = requests.decode_object(data, self._max_bytes, empty_ok=True)
            self.commands_processed += 1
            return requests.parse(obj, command=query_type, domain=domain)
        obj = requests.decode_object(data, self._max_bytes)
        self.commands_processed += 1  # as 0.7.1: everything that reaches the dispatcher
        return requests.parse(obj)

    async def _execute(self, req: requests.Request) -> bytes:
        command = commands.BY_NAME[req.command]
        if command.write:
            return await self._forward_write(req)
        if command.tables:
            if not self._replica.loaded:
                raise Unavailable(
                    f"not ready: {self._replica.problem or 'no snapshot loaded yet'}", req.command
                )
            if req.min_seq is not None and req.min_seq > self._replica.applied_seq:
                await self._wait_for(req)
        need = req.min_seq or 0
        self._floor = max(self._floor, need)
        key = req.command.encode() + b"\0" + msgspec.json.encode(req.params)
        if command.cache == "live":
            return await self._live[req.command](req.params, key, need)
        model = self._replica.model
        if model is not None and req.command in reads.SOURCE_READS:
            reply = self._from_model(model, req, key, need)
            if reply is not None:
                return reply
        return await self._from_tables(req, key, need)

    # --- from the read model (event loop) ---------------------------------------------------

    def _model_domain(self, model: ReadModel) -> str:
        if self._settings.channels:
            return self._settings.default_domain
        seen = model.busiest_channel()
        return seen[0] if seen else self._settings.default_domain

    def _from_model(self, model: ReadModel, req: requests.Request, key: bytes, need: int) -> bytes | None:
        """A user.* reply from the model at its sequence, or None when the reply needs the
        tables (a channel the log has not seen there: the note explaining it reads them)."""
        p = req.params
        domain = getattr(p, "domain", None) or self._model_domain(model)
        channel = getattr(p, "channel", None)
        if channel and not model.has_channel(domain, channel):
            return None
        user: str = p.username  # type: ignore[attr-defined]
        e = self._cache.get(key)
        if (
            e is not None
            and e.epoch == -model.epoch  # apart from the tables epochs
            and e.seq >= need
            and e.domain == domain
            and model.changed.get(user.lower(), 0) <= e.seq
        ):
            reply: bytes = self._cache.hit(e)
            return reply
        data = reads.SOURCE_READS[req.command](ModelUsers(model, domain), p)
        reply = m.ok(req.command, data, model.seq)
        self._cache.put(key, Entry(-model.epoch, model.seq, reply, domain))
        return reply

    # --- from the tables (reader threads) ---------------------------------------------------

    async def _from_tables(self, req: requests.Request, key: bytes, need: int) -> bytes:
        rep = self._replica
        e = self._cache.get(key)
        if e is not None and e.epoch == rep.epoch and e.seq >= need and e.seq == rep.db_seq:
            reply: bytes = self._cache.hit(e)
            return reply

        async def compute() -> Entry:
            epoch = rep.epoch
            seq, reply = await rep.read(self._read, req.command, req.params, need_seq=need)
            return Entry(epoch, seq, reply)

        entry = await self._cache.shared(key, max(need, rep.db_seq), compute)
        value: bytes = entry.value
        return value

    async def _wait_for(self, req: requests.Request) -> None:
        timeout = self._settings.userstats.min_seq_timeout_seconds
        raw_timeout = req.raw.get("timeout")
        if isinstance(raw_timeout, int | float) and not isinstance(raw_timeout, bool) and raw_timeout > 0:
            timeout = min(float(raw_timeout), self._settings.userstats.min_seq_timeout_max_seconds)
        assert req.min_seq is not None
        if not await self._replica.wait_applied(req.min_seq, timeout):
            raise Unavailable(
                f"Timed out after {timeout:g} s waiting for seq {req.min_seq}; "
                f"this replica is at seq {self._replica.applied_seq}",
                req.command,
            )

    # --- on a reader thread -----------------------------------------------------------------

    def _scope(self, view: Committed) -> reads.Scope:
        return reads.Scope(view.con, self._default_domain(view), view.event_us)

    def _default_domain(self, view: Committed) -> str:
        """The first configured channel's domain; with none configured, the domain of the
        busiest channel in the stream (so a bare replica answers for what it has seen)."""
        if self._settings.channels:
            return self._settings.default_domain
        epoch, seq, domain = self._seen_default
        if (epoch, seq) != (self._replica.epoch, view.seq):
            seen = reads.busiest_channel(view.con)
            domain = seen[0] if seen else self._settings.default_domain
            self._seen_default = (self._replica.epoch, view.seq, domain)
        return domain

    def _read(self, view: Committed, command: str, params: Any) -> tuple[int, bytes]:
        sc = self._scope(view)
        data = READS[command](sc, params)
        note = reads.channel_note(sc, getattr(params, "channel", None), getattr(params, "domain", None))
        return view.seq, m.ok(command, data, view.seq, note)

    def totals_now(self, view: Committed) -> dict[str, int]:
        if self._totals[0] != view.seq:
            self._totals = (view.seq, reads.totals(self._scope(view)))
        return self._totals[1]

    def dashboard_now(self, view: Committed) -> dict[str, list[tuple[Any, ...]]]:
        """Labelled figures for /metrics."""
        return reads.dashboard(self._scope(view))

    def _stats(self, t: dict[str, int]) -> r.SystemStats:
        return reads.system_stats(t, self.commands_processed)

    def _all_stats_tables(self, view: Committed, p: m.AllStatsParams) -> reads.AllStatsTables:
        """The parts of channel.all_stats that change only with the tables."""
        self.totals_now(view)  # system.stats' part of the reply, fresh at this seq too
        return reads.all_stats_tables(self._scope(view), p, self._settings.default_channel, view.seq)

    async def _totals_current(self, need: int) -> dict[str, int]:
        if self._totals[0] != self._replica.db_seq or self._totals[0] < need:
            return await self._replica.read(self.totals_now, need_seq=need)
        return self._totals[1]

    async def _ping_reply(self, _p: m.NoParams, _key: bytes, _need: int) -> bytes:
        return m.ok("system.ping", self._ping(), self._replica.db_seq)

    async def _health_reply(self, _p: m.NoParams, _key: bytes, _need: int) -> bytes:
        return m.ok("system.health", self._health(), self._replica.db_seq)

    async def _system_stats(self, _p: m.NoParams, _key: bytes, need: int) -> bytes:
        totals = await self._totals_current(need)
        return m.ok("system.stats", self._stats(totals), self._totals[0])

    async def _all_stats(self, p: m.AllStatsParams, key: bytes, need: int) -> bytes:
        """Tables part cached per sequence, as the reply's bytes around the system part (uptime,
        commands), which is always fresh. While a newer tables part is being read, a plain
        request (no `min_seq`) gets the one before it, unless a `min_seq` request has already
        asked for a later sequence."""
        rep = self._replica

        async def compute() -> Entry:
            epoch = rep.epoch
            t = await rep.read(self._all_stats_tables, p, need_seq=need)
            data = r.AllStats(
                domain=t.domain,
                system=cast(r.AllStatsSystem, msgspec.Raw(_SYSTEM_MARK)),
                leaderboards=t.leaderboards,
                channel=t.channel,
            )
            head, tail = m.ok("channel.all_stats", data, t.seq, t.note).split(_SYSTEM_KEY + _SYSTEM_MARK, 1)
            return Entry(epoch, t.seq, (head + _SYSTEM_KEY, tail))

        e = self._cache.get(key)
        usable = e is not None and e.epoch == rep.epoch and e.seq >= need
        if e is not None and usable and e.seq == rep.db_seq:
            head, tail = self._cache.hit(e)
        elif e is not None and usable and need == 0 and e.seq >= self._floor:
            # newer tables: read them in the background, answer from the previous ones meanwhile
            if not self._cache.refreshing(key):
                refresh = asyncio.ensure_future(self._cache.shared(key, rep.db_seq, compute))
                refresh.add_done_callback(_quiet)
            head, tail = self._cache.hit(e)
        else:
            head, tail = (await self._cache.shared(key, max(need, rep.db_seq), compute)).value
        system = r.AllStatsSystem(health=self._health(), stats=self._stats(self._totals[1]))
        return b"".join((head, msgspec.json.encode(system), tail))

    # --- system commands -------------------------------------------------------------------

    def uptime(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def _ping(self) -> r.Ping:
        return r.Ping(
            pong=True,
            service=m.SERVICE,
            version=__version__,
            uptime_seconds=self.uptime(),
            timestamp=datetime.now(UTC).isoformat(),
            metrics_endpoint=f"http://{self._hostname}:{self._settings.metrics.port}/metrics",
        )

    def _health(self) -> r.Health:
        """system.health: the level of the one health rule (query/health.py) with its inputs."""
        replica = self._replica
        return r.Health(
            service=m.SERVICE,
            status=health.judge(self._condition()).level,
            uptime_seconds=self.uptime(),
            database_connected=replica.loaded,
            nats_connected=self._nc.is_connected,
            following=replica.following,
            snapshot_seq=replica.pointer.seq if replica.pointer else None,
            problem=replica.problem,
        )

    # --- writes ---------------------------------------------------------------------------

    async def _forward_write(self, req: requests.Request) -> bytes:
        """Alias writes go to ingest, the only writer; reply once this replica has them too."""
        body = msgspec.json.encode({k: v for k, v in req.raw.items() if k != "min_seq"})
        try:
            msg = await self._nc.request(INGEST_COMMAND_SUBJECT, body, timeout=WRITE_TIMEOUT)
        except NoRespondersError:
            raise m.RequestError(
                "ingest is not running: alias changes are unavailable", req.command
            ) from None
        except (NatsTimeoutError, TimeoutError):
            raise m.RequestError(f"ingest did not answer within {WRITE_TIMEOUT:.0f} s", req.command) from None
        try:
            seq = int(msgspec.json.decode(msg.data).get("as_of_seq", 0))
        except (msgspec.DecodeError, AttributeError, TypeError, ValueError):
            seq = 0
        if seq > self._replica.applied_seq:
            await self._replica.wait_applied(seq, 2.0)
        if self._replica.applied_seq >= seq > self._replica.db_seq:
            await self._replica.flush_to(seq)  # every read after the reply sees the write
        return bytes(msg.data)
