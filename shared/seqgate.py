"""The newest stream sequence a component has applied, and waiting for one to be reached."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class SequenceGate:
    """`wait(n)` returns once `seq` reaches n (read-your-writes, min_seq). `seq` grows with
    each advance; a replica that loads a rebuilt generation may set it lower directly."""

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self.listeners: list[Callable[[], None]] = []  # called after every advance
        self._cond = asyncio.Condition()

    async def advance(self, seq: int) -> None:
        self.seq = seq
        async with self._cond:
            self._cond.notify_all()
        for listener in self.listeners:
            listener()

    async def wait(self, seq: int, timeout: float) -> bool:
        """True once `seq` is reached, False after `timeout` seconds."""
        async with self._cond:
            try:
                await asyncio.wait_for(self._cond.wait_for(lambda: self.seq >= seq), timeout)
            except TimeoutError:
                return False
        return True
