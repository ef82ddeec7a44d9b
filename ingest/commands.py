"""Write commands (alias.add / alias.delete / alias.update / user.forget), forwarded here by replicas.

Serialized by one lock: decide on the live State, append the journal event, wait until it
is projected, reply with the outcome and the seq it is visible at (read-your-writes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from userstats.ingest import aliases
from userstats.ingest.eraser import Eraser
from userstats.ingest.journal import Journal, JournalError
from userstats.ingest.projector import ProjectorLoop
from userstats.shared import forget, requests
from userstats.shared import messages as m
from userstats.shared.state import State
from userstats.shared.subjects import INGEST_COMMAND_SUBJECT, INGEST_QUEUE_GROUP

log = logging.getLogger(__name__)

PROJECT_TIMEOUT = 10.0

Outcome = aliases.AliasOutcome | forget.ForgetOutcome
# Each write command's decision on the live State (its params are the command's, shared/commands.py)
DECIDE: dict[str, Callable[[State, Any, datetime], Outcome]] = {
    "alias.add": aliases.decide_add,
    "alias.delete": aliases.decide_delete,
    "alias.update": aliases.decide_update,
    "user.forget": forget.decide,
}


class WriteCommands:
    def __init__(
        self,
        nc: Client,
        journal: Journal,
        loop: Callable[[], ProjectorLoop],
        max_bytes: int,
        eraser: Eraser | None = None,
    ) -> None:
        self._nc = nc
        self._eraser = eraser
        self._journal = journal
        self._loop = loop
        self._max_bytes = max_bytes
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._nc.subscribe(INGEST_COMMAND_SUBJECT, queue=INGEST_QUEUE_GROUP, cb=self._on_msg)

    async def _on_msg(self, msg: Msg) -> None:
        reply = await self.handle(msg.data)
        if msg.reply:
            await msg.respond(reply)

    async def handle(self, data: bytes) -> bytes:
        command: str | None = None
        try:
            req = requests.parse(requests.decode_object(data, self._max_bytes))
            command = req.command
            if command not in requests.WRITE_COMMANDS:
                raise m.RequestError(f"{command} is not a write command", command)
            async with self._lock:
                return await self._execute(req)
        except m.RequestError as exc:
            return m.error(exc.command or command, exc.message, self._loop().applied_seq)

    async def _execute(self, req: requests.Request) -> bytes:
        state = self._loop().projector.state
        now = datetime.now(UTC)
        outcome = DECIDE[req.command](state, req.params, now)
        if outcome.event is None:
            return m.ok(req.command, outcome.data, self._loop().applied_seq)
        try:
            seq = await self._journal.append(outcome.event)
        except JournalError as exc:
            raise m.RequestError(f"{req.command} not recorded: {exc}", req.command) from exc
        if not await self._loop().wait_applied(seq, PROJECT_TIMEOUT):
            raise m.RequestError(
                f"{req.command} appended at seq {seq} but not projected within {PROJECT_TIMEOUT:.0f} s",
                req.command,
            )
        if isinstance(outcome, forget.ForgetOutcome):
            if self._eraser is not None:
                await self._eraser.start_scan(outcome.event.user_hash, seq)
            log.info("user.forget: user %s forgotten at seq %d", outcome.event.user_hash[:12], seq)
        else:
            log.info("%s: %s (seq %d)", req.command, outcome.data.message, seq)
        return m.ok(req.command, outcome.data, seq)
