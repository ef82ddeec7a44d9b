"""The live commands' replies, built fresh for every request (cache "live" in
shared/commands.py): system.ping, system.health and system.stats carry the process's uptime
and counters; channel.all_stats holds system.stats and system.health, so only its tables part
is cached, as the reply's bytes around them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
from nats.aio.client import Client
from userstats.query import health, reads
from userstats.query.answers import Answers
from userstats.query.replica import Replica
from userstats.query.replycache import Entry, ReplyCache
from userstats.query.tables import Committed
from userstats.shared import __version__, commands
from userstats.shared import messages as m
from userstats.shared import replies as r
from userstats.shared.settings import Settings

log = logging.getLogger(__name__)

LIVE = frozenset(c.name for c in commands.COMMANDS if c.cache == "live" and not c.write)
# A live command's reply from (its parameters, its cache key, the seq it must reflect).
Live = Callable[[Any, bytes, int], Awaitable[bytes]]
# channel.all_stats is cached as the bytes around its system part (fresh in every reply)
_SYSTEM_KEY, _SYSTEM_MARK = b'"system":', b"@@SYSTEM@@"


def _quiet(f: asyncio.Future[Any]) -> None:
    """A background refresh's failure: the next request reads again (and sees the error)."""
    if not f.cancelled() and f.exception() is not None:
        log.warning("background refresh failed: %s", f.exception())


class LiveReplies:
    """`processed` counts the commands the dispatcher has handled; `floor` is the highest
    `min_seq` asked (no channel.all_stats older than it is served stale)."""

    def __init__(
        self,
        nc: Client,
        replica: Replica,
        settings: Settings,
        condition: Callable[[], health.Condition],
        cache: ReplyCache,
        answers: Answers,
        processed: Callable[[], int],
        floor: Callable[[], int],
    ) -> None:
        self._nc = nc
        self._replica = replica
        self._settings = settings
        self._condition = condition
        self._cache = cache
        self._answers = answers
        self._processed = processed
        self._floor = floor
        self.started = time.monotonic()
        self._totals: tuple[int, dict[str, int]] = (-1, {})
        self._hostname = socket.gethostname()
        # the commands whose reply is built here, fresh each time (cache "live" in the table)
        self.by_command: dict[str, Live] = {
            "system.ping": self._ping_reply,
            "system.health": self._health_reply,
            "system.stats": self._system_stats,
            "channel.all_stats": self._all_stats,
        }
        assert set(self.by_command) == LIVE, set(self.by_command) ^ LIVE

    # --- on a reader thread -----------------------------------------------------------------

    def totals_now(self, view: Committed) -> dict[str, int]:
        if self._totals[0] != view.seq:
            self._totals = (view.seq, reads.totals(self._answers.scope(view)))
        return self._totals[1]

    def _all_stats_tables(self, view: Committed, p: m.AllStatsParams) -> reads.AllStatsTables:
        """The parts of channel.all_stats that change only with the tables."""
        self.totals_now(view)  # system.stats' part of the reply, fresh at this seq too
        return reads.all_stats_tables(self._answers.scope(view), p, self._settings.default_channel, view.seq)

    # --- the replies ------------------------------------------------------------------------

    def _stats(self, t: dict[str, int]) -> r.SystemStats:
        return reads.system_stats(t, self._processed())

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
        if rep.model is not None and rep.model.forget_seq > need:
            # nothing from before a forget this replica has applied, even for a plain request
            # (the stale-while-refresh path below would give it once more, with the name)
            need = rep.model.forget_seq

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
        elif e is not None and usable and need == 0 and e.seq >= self._floor():
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
