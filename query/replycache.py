"""The one reply cache of a replica: replies (or the table part of channel.all_stats) per
(command, parameters), each with what it was computed from, so the dispatcher can tell
whether it still holds:

- a reply read from the tables holds while they are at the same sequence (`epoch` names the
  loaded tables, `seq` the checkpoint the read saw);
- a reply read from the read model holds while that user's rows are unchanged since `seq`
  (`ReadModel.changed`), for the same default domain (`domain`), in the same model (`epoch`).

Concurrent requests for the same key share one computation (`shared`), so a write that
invalidates a popular reply costs one read, not one per requester.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

CACHE_MAX = 10_000


class Entry(NamedTuple):
    epoch: int
    seq: int
    value: Any  # reply bytes, or reads.AllStatsTables
    domain: str = ""


class ReplyCache:
    def __init__(self, on_hit: Callable[[], None], max_entries: int = CACHE_MAX) -> None:
        self._entries: dict[bytes, Entry] = {}
        self._inflight: dict[bytes, tuple[int, asyncio.Future[Entry]]] = {}
        self._on_hit = on_hit
        self._max = max_entries

    def get(self, key: bytes) -> Entry | None:
        return self._entries.get(key)

    def hit(self, entry: Entry) -> Any:
        """Count a reply served from the cache, and give it."""
        self._on_hit()
        return entry.value

    def put(self, key: bytes, entry: Entry) -> Entry:
        if len(self._entries) >= self._max and key not in self._entries:
            self._entries.clear()
        self._entries[key] = entry
        return entry

    def refreshing(self, key: bytes) -> bool:
        return key in self._inflight

    async def shared(self, key: bytes, covers: int, compute: Callable[[], Awaitable[Entry]]) -> Entry:
        """The entry `compute` gives, shared with a computation under way for the same key that
        reads at least sequence `covers`; the result is cached."""
        running = self._inflight.get(key)
        if running is None or running[0] < covers:
            fut: asyncio.Future[Entry] = asyncio.ensure_future(self._compute(key, compute))
            running = self._inflight[key] = (covers, fut)

            def done(f: asyncio.Future[Entry], key: bytes = key) -> None:
                if self._inflight.get(key, (0, None))[1] is f:
                    del self._inflight[key]
                if not f.cancelled():
                    f.exception()  # retrieved: a failure reaches every waiter, not the log

            fut.add_done_callback(done)
        return await asyncio.shield(running[1])

    async def _compute(self, key: bytes, compute: Callable[[], Awaitable[Entry]]) -> Entry:
        entry = await compute()
        old = self._entries.get(key)
        if old is None or (entry.epoch, entry.seq) >= (old.epoch, old.seq):  # never an older one
            self.put(key, entry)
        return entry

    def clear(self) -> None:
        self._entries.clear()
