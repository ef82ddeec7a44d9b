"""From request bytes to reply bytes: decode, route, wait for min_seq, read or forward.

Bad input of any kind becomes the spec's error envelope; nothing raises out of `handle`.
Replies to reads are cached per (command, parameters) and valid only for the sequence they
were computed at: the tables change only when a batch is applied.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from userstats.query import health, reads
from userstats.query.metrics import QueryMetrics
from userstats.query.replica import Replica
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
CACHE_MAX = 10_000


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
        self._cache: dict[bytes, tuple[int, int, bytes]] = {}  # epoch, seq, reply
        self._totals: tuple[int, dict[str, int]] = (-1, {})
        self._all_cache: dict[bytes, reads.AllStatsTables] = {}
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
        key = req.command.encode() + b"\0" + msgspec.json.encode(req.params)
        if command.cache == "live":
            return await self._live[req.command](req.params, key, need)
        cached = self._cache.get(key)
        if cached is not None and cached[1] >= need and self._still_valid(req, cached[0], cached[1]):
            self._metrics.cache_hits.inc()
            return cached[2]
        return await self._replica.read(self._read, req.command, req.params, key, need_seq=need)

    def _still_valid(self, req: requests.Request, epoch: int, seq: int) -> bool:
        """A reply computed at `seq` holds while the tables it read are unchanged: any write
        for most commands; for the user.* ones, only a write that touched that user's rows
        (with writes every 50 ms under traffic, the other users' replies stay cached)."""
        rep = self._replica
        if epoch != rep.epoch:
            return False
        if req.command in commands.USER_COMMANDS:
            user = getattr(req.params, "username", None)
            return isinstance(user, str) and rep.user_changed.get(user.lower(), 0) <= seq
        return seq == rep.db_seq

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

    # --- on the database thread ----------------------------------------------------------

    def _scope(self) -> reads.Scope:
        con = self._replica.con
        assert con is not None
        return reads.Scope(con, self._default_domain(con), self._replica.event_time_us)

    def _default_domain(self, con: Any) -> str:
        """The first configured channel's domain; with none configured, the domain of the
        busiest channel in the stream (so a bare replica answers for what it has seen)."""
        if self._settings.channels:
            return self._settings.default_domain
        rep = self._replica
        epoch, seq, domain = self._seen_default
        if (epoch, seq) != (rep.epoch, rep.db_seq):
            seen = reads.busiest_channel(con)
            domain = seen[0] if seen else self._settings.default_domain
            self._seen_default = (rep.epoch, rep.db_seq, domain)
        return domain

    def _read(self, command: str, params: Any, key: bytes) -> bytes:
        seq = self._replica.db_seq
        sc = self._scope()
        data = READS[command](sc, params)
        note = reads.channel_note(sc, getattr(params, "channel", None), getattr(params, "domain", None))
        reply = m.ok(command, data, seq, note)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[key] = (self._replica.epoch, seq, reply)
        return reply

    def totals_now(self) -> dict[str, int]:
        seq = self._replica.db_seq
        if self._totals[0] != seq:
            self._totals = (seq, reads.totals(self._scope()))
        return self._totals[1]

    def dashboard_now(self) -> dict[str, list[tuple[Any, ...]]]:
        """Labelled figures for /metrics (database thread)."""
        return reads.dashboard(self._scope())

    def _stats(self, t: dict[str, int]) -> r.SystemStats:
        return reads.system_stats(t, self.commands_processed)

    def _all_stats_tables(self, p: m.AllStatsParams) -> reads.AllStatsTables:
        """The parts of channel.all_stats that change only with the tables (database thread)."""
        self.totals_now()  # system.stats' part of the reply, fresh at this seq too
        return reads.all_stats_tables(self._scope(), p, self._settings.default_channel, self._replica.db_seq)

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
        """Tables part cached per sequence; the system part (uptime, commands) is always fresh."""
        cached = self._all_cache.get(key)
        if cached is None or cached.seq != self._replica.db_seq or cached.seq < need:
            cached = await self._replica.read(self._all_stats_tables, p, need_seq=need)
            if len(self._all_cache) >= 1000:
                self._all_cache.clear()
            self._all_cache[key] = cached
        else:
            self._metrics.cache_hits.inc()
        data = r.AllStats(
            domain=cached.domain,
            system=r.AllStatsSystem(health=self._health(), stats=self._stats(self._totals[1])),
            leaderboards=cached.leaderboards,
            channel=cached.channel,
        )
        return m.ok("channel.all_stats", data, cached.seq, cached.note)

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
        return bytes(msg.data)
