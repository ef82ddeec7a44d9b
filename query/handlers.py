"""From request bytes to reply bytes: decode, route, wait for min_seq, read or forward.

Bad input of any kind becomes the spec's error envelope; nothing raises out of `handle`.
A read's reply comes from query/answers.py (cached: the read model or the tables), or, for
the commands that carry the process's own figures, from query/live.py; a write is forwarded
to ingest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from userstats.query import health, reads
from userstats.query.answers import Answers
from userstats.query.live import LiveReplies
from userstats.query.metrics import QueryMetrics
from userstats.query.replica import Replica
from userstats.query.replycache import ReplyCache
from userstats.query.tables import Committed
from userstats.shared import commands, requests
from userstats.shared import messages as m
from userstats.shared.settings import Settings
from userstats.shared.subjects import INGEST_COMMAND_SUBJECT, SEED_PREFIX

log = logging.getLogger(__name__)

WRITE_TIMEOUT = 15.0


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
        self._replica = replica
        self._settings = settings
        self._metrics = metrics
        self._max_bytes = settings.userstats.request_max_bytes
        self.commands_processed = 0
        cache = ReplyCache(metrics.cache_hits.inc)
        self._floor = 0  # the highest min_seq asked: no reply older than it is served stale
        self._answers = Answers(replica, settings, cache)
        self._live = LiveReplies(
            nc,
            replica,
            settings,
            condition,
            cache,
            self._answers,
            lambda: self.commands_processed,
            lambda: self._floor,
        )

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
            return await self._live.by_command[req.command](req.params, key, need)
        model = self._replica.model
        if model is not None and req.command in reads.SOURCE_READS:
            reply = self._answers.from_model(model, req, key, need)
            if reply is not None:
                return reply
        return await self._answers.from_tables(req, key, need)

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

    # --- for /metrics (reader threads) --------------------------------------------------------

    def totals_now(self, view: Committed) -> dict[str, int]:
        return self._live.totals_now(view)

    def dashboard_now(self, view: Committed) -> dict[str, list[tuple[Any, ...]]]:
        """Labelled figures for /metrics."""
        return self._answers.dashboard_now(view)

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
        # including a plain channel.all_stats, which may otherwise answer from before it (a
        # forgotten user's name must not be served again once the forget is answered)
        self._floor = max(self._floor, seq)
        return bytes(msg.data)
