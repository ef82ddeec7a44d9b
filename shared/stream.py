"""Reading the event stream in order from a given sequence, with backpressure and gap checks.

An ordered push consumer (no acks; DESIGN explains why not pull fetch) feeds a bounded
buffer. Our own sequence check catches what the library's ordered consumer cannot: a
message the client dropped as a slow consumer. On such a gap we resubscribe from the next
sequence we need; a gap right after (re)subscribing means the stream no longer holds those
messages, and is reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import NamedTuple

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

log = logging.getLogger(__name__)


class Item(NamedTuple):
    seq: int
    subject: str
    data: bytes
    stream_us: int  # when the stream stored it (part of the log, so deterministic)


def parse_ack_reply(reply: str) -> tuple[int, int, int]:
    """(stream seq, stored time in ns, pending) from a JetStream delivery reply subject."""
    if reply.count(".") == 8:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
        _, sseq, _, ts, pending = reply.rsplit(".", 4)
        return int(sseq), int(ts), int(pending)
    t = reply.split(".")
    # $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>...
    return int(t[7]), int(t[9]), int(t[10])


def _consumer_seq(reply: str) -> int:
    """The consumer sequence of a delivery (consecutive for an ordered consumer)."""
    t = reply.split(".")
    return int(t[6] if len(t) == 9 else t[8])


class StreamReader:
    """Delivers every stored message from `start_seq` on, in sequence order."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subjects: list[str],
        start_seq: int,
        max_buffer: int = 50_000,
    ) -> None:
        self._js = js
        self._stream = stream
        self._subjects = subjects
        self.next_seq = max(1, start_seq)  # the next sequence we need
        self.pending = 0  # messages the server still had after the newest one received
        self.gaps = 0  # messages the stream no longer had (deleted, or aged out)
        self._dseq = 0  # the consumer sequence of the last delivery (consecutive unless dropped)
        self._buf: deque[Item] = deque()
        self._max_buffer = max_buffer
        self._room = asyncio.Event()
        self._room.set()
        self._ready = asyncio.Event()
        self._sub: JetStreamContext.PushSubscription | None = None
        self._fresh = True  # the next message is the first since (re)subscribing
        self._resubscribing = False

    async def start(self) -> None:
        await self._subscribe()

    async def _subscribe(self) -> None:
        config = api.ConsumerConfig(
            filter_subjects=self._subjects,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.next_seq,
        )
        self._fresh = True
        self._dseq = 0
        self._sub = await self._js.subscribe(
            self._subjects[0],
            stream=self._stream,
            config=config,
            ordered_consumer=True,
            cb=self._on_msg,
            idle_heartbeat=2.0,
        )
        log.debug("stream %s: reading from seq %d", self._stream, self.next_seq)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # connection already closed: nothing to undo
                log.debug("unsubscribe: %s", exc)
        self._room.set()

    async def _on_msg(self, msg: Msg) -> None:
        if not msg.reply:
            return
        seq, ts_ns, pending = parse_ack_reply(msg.reply)
        if self._resubscribing:
            return  # a resubscribe is under way
        dseq = _consumer_seq(msg.reply)
        consecutive = dseq == self._dseq + 1 or dseq == 1  # 1: the library reset its consumer
        self._dseq = dseq
        if seq < self.next_seq:
            return  # already have it (a library reset replays)
        if seq > self.next_seq:
            if not self._fresh and not consecutive:
                log.warning(
                    "stream %s: got seq %d while expecting %d (client dropped messages); "
                    "resubscribing from %d",
                    self._stream,
                    seq,
                    self.next_seq,
                    self.next_seq,
                )
                self._resubscribing = True
                asyncio.get_running_loop().create_task(self._resubscribe())
                return
            # deleted (user.forget) or aged out (the stream's limits): the log goes on. Only a
            # gap where reading starts can be events never read; one in between is a deletion.
            log.log(
                logging.WARNING if self._fresh else logging.DEBUG,
                "stream %s: messages %d..%d are no longer in the stream; continuing at %d",
                self._stream,
                self.next_seq,
                seq - 1,
                seq,
            )
            self.gaps += seq - self.next_seq
        self._fresh = False
        self.next_seq = seq + 1
        self.pending = pending
        self._buf.append(Item(seq, msg.subject, msg.data, ts_ns // 1000))
        self._ready.set()
        if len(self._buf) >= self._max_buffer:
            self._room.clear()
            await self._room.wait()  # backpressure: the library stops flow-control replies

    async def _resubscribe(self) -> None:
        try:
            await self.stop()
            await self._subscribe()
        finally:
            self._resubscribing = False

    def buffered(self) -> int:
        return len(self._buf)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until at least one message is buffered; False on timeout."""
        if self._buf:
            return True
        self._ready.clear()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return bool(self._buf)

    def take(self, limit: int) -> list[Item]:
        """Up to `limit` buffered messages, oldest first, without waiting."""
        n = min(limit, len(self._buf))
        out = [self._buf.popleft() for _ in range(n)]
        if len(self._buf) < self._max_buffer // 2:
            self._room.set()
        return out
