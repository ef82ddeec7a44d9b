"""Reading the event stream in order from a given sequence, with backpressure and gap checks.

An ordered push consumer (no acks; DESIGN explains why not pull fetch) feeds a bounded
buffer. Its flow control is what bounds the messages in flight: the server stops once
32 MiB are sent and not yet confirmed, and nats-py confirms a flow-control point once the
message before it has been *taken* from the subscription's queue. It counts a message
handed to a callback as taken on arrival, though, so a callback subscription confirms at
once and the server sends the whole backlog (a million events became 500 MB of queued
messages in ingest). So the reader subscribes without a callback and takes messages from
the queue itself (`_drain`), only while its own buffer has room.

Our own sequence check catches what the library's ordered consumer cannot: a
message the client dropped as a slow consumer. The consumer's delivery sequence tells the
two kinds of jump in the stream sequence apart: a deleted message (a raw PM ingest erased)
leaves a hole in the stream sequence but none in the delivery sequence, and is skipped;
a jump in the delivery sequence means the client lost messages, and we resubscribe from
the next sequence we need. A jump right after (re)subscribing is told apart by the
stream's first sequence: below it the stream's limits removed the messages (a gap, reported),
above it they were deleted one by one (holes, skipped quietly; deletes at the very front move
the first sequence, so they read as a gap).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import NamedTuple

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

log = logging.getLogger(__name__)

# A resubscribe that fails (the server unreachable, the consumer create timing out) is tried
# again after this long, doubling up to the most, until it works or the reader is stopped.
RESUBSCRIBE_FIRST_WAIT = 0.5
RESUBSCRIBE_MAX_WAIT = 8.0


class Item(NamedTuple):
    seq: int
    subject: str
    data: bytes
    stream_us: int  # when the stream stored it (part of the log, so deterministic)


def parse_delivery(reply: str) -> tuple[str, int, int, int, int]:
    """(consumer, stream seq, delivery seq, stored time in ns, pending) from a delivery reply."""
    t = reply.split(".")
    if len(t) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
        return t[3], int(t[5]), int(t[6]), int(t[7]), int(t[8])
    # $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>...
    return t[5], int(t[7]), int(t[8]), int(t[9]), int(t[10])


def parse_ack_reply(reply: str) -> tuple[int, int, int]:
    """(stream seq, stored time in ns, pending) from a JetStream delivery reply subject."""
    if reply.count(".") == 8:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
        _, sseq, _, ts, pending = reply.rsplit(".", 4)
        return int(sseq), int(ts), int(pending)
    t = reply.split(".")
    # $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>...
    return int(t[7]), int(t[9]), int(t[10])


class StreamReader:
    """Delivers every stored message from `start_seq` on, in sequence order."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subjects: list[str],
        start_seq: int,
        max_buffer: int = 20_000,
    ) -> None:
        self._js = js
        self._stream = stream
        self._subjects = subjects
        self.next_seq = max(1, start_seq)  # the next sequence we need
        self.pending = 0  # messages the server still had after the newest one received
        self.gaps: list[tuple[int, int]] = []  # ranges the stream no longer had
        self.holes = 0  # single deleted messages skipped (normal: erased raw PMs)
        self._consumer = ""  # the consumer of the last message, and its delivery seq
        self._dseq = 0
        self._buf: deque[Item] = deque()
        self._max_buffer = max_buffer
        self._room = asyncio.Event()
        self._room.set()
        self._ready = asyncio.Event()
        self._sub: JetStreamContext.PushSubscription | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._fresh = True  # the next message is the first since (re)subscribing
        self._resubscribing = False
        self._resubscribe_task: asyncio.Task[None] | None = None
        self._stopped = False

    def stopped(self) -> bool:
        return self._stopped

    async def start(self) -> None:
        self._stopped = False
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
            idle_heartbeat=2.0,
        )
        self._drain_task = asyncio.get_running_loop().create_task(self._drain(self._sub))
        self._drain_task.add_done_callback(self._drained)
        log.debug("stream %s: reading from seq %d", self._stream, self.next_seq)

    async def _drain(self, sub: JetStreamContext.PushSubscription) -> None:
        """Take the subscription's messages as the buffer has room for them, and confirm a
        flow-control point as soon as the message before it is taken (see the module doc).
        nats-py 2.16's own parts: the queue and its byte count, and the ordered consumer's
        pending flow-control reply (`_fcr`, due once `_fcd` messages are taken), which its
        own poller would send only every 0.25 s (reading 25% slower). The ordered consumer
        keeps the queue across its resets."""
        queue: asyncio.Queue[Msg] = sub._pending_queue
        jsi = sub._sub._jsi
        if jsi is None:
            raise RuntimeError("nats-py gave an ordered consumer without its JetStream state")
        nc = self._js._nc
        while True:
            msg = await queue.get()
            sub._pending_size -= len(msg.data)
            queue.task_done()
            await self._on_msg(msg)  # waits while the buffer is full
            fc = jsi._fcr
            if fc and jsi._fciseq - queue.qsize() >= jsi._fcd:
                jsi._fcr, jsi._fcd = None, 0
                await nc.publish(fc)

    def _drained(self, task: asyncio.Task[None]) -> None:
        """The drain task ended: by a stop or resubscribe (cancelled), or by an error, after
        which the reader reads again from where it was."""
        if task.cancelled() or task.exception() is None or self._stopped:
            return
        log.error(
            "stream %s: reading failed (%r); resubscribing from seq %d",
            self._stream,
            task.exception(),
            self.next_seq,
        )
        if not self._resubscribing:
            self._resubscribing = True
            self._resubscribe_task = asyncio.get_running_loop().create_task(self._resubscribe())

    async def stop(self) -> None:
        self._stopped = True
        task, self._resubscribe_task = self._resubscribe_task, None
        if task is not None and not task.done():
            task.cancel()  # a resubscribe still trying: the reader is done
        await self._unsubscribe()

    async def _unsubscribe(self) -> None:
        task, self._drain_task = self._drain_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
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
        consumer, seq, dseq, ts_ns, pending = parse_delivery(msg.reply)
        if seq < self.next_seq or self._resubscribing:
            return  # already have it (a library reset replays), or a resubscribe is under way
        contiguous = consumer == self._consumer and dseq == self._dseq + 1
        self._consumer, self._dseq = consumer, dseq
        if seq > self.next_seq:
            if contiguous:  # the consumer skipped nothing: those messages were deleted
                self.holes += seq - self.next_seq
            elif not self._fresh:
                log.warning(
                    "stream %s: got seq %d while expecting %d (client dropped messages); "
                    "resubscribing from %d",
                    self._stream,
                    seq,
                    self.next_seq,
                    self.next_seq,
                )
                self._resubscribing = True
                self._consumer = ""
                self._resubscribe_task = asyncio.get_running_loop().create_task(self._resubscribe())
                return
            else:
                # The first message since subscribing: the jump is either single deletes (raw
                # PMs ingest erased: holes, normal) or messages the stream's limits removed
                # (below its first seq: a gap, reported). Only the stream can tell them apart.
                first = await self._stream_first_seq()
                removed_to = seq - 1 if first is None else min(seq - 1, first - 1)
                if removed_to >= self.next_seq:
                    log.warning(
                        "stream %s: messages %d..%d are not in the stream (removed by its limits "
                        "or a purge); continuing at %d",
                        self._stream,
                        self.next_seq,
                        removed_to,
                        seq,
                    )
                    self.gaps.append((self.next_seq, removed_to))
                self.holes += seq - 1 - max(removed_to, self.next_seq - 1)
        self._fresh = False
        self.next_seq = seq + 1
        self.pending = pending
        self._buf.append(Item(seq, msg.subject, msg.data, ts_ns // 1000))
        self._ready.set()
        if len(self._buf) >= self._max_buffer:
            self._room.clear()
            await self._room.wait()  # backpressure: the library stops flow-control replies

    async def _stream_first_seq(self) -> int | None:
        """The stream's first stored seq, or None when the server does not say in time."""
        try:
            info = await self._js.stream_info(self._stream)
        except Exception as exc:  # no answer: report the whole jump as a gap
            log.debug("stream info for the gap check: %s", exc)
            return None
        return int(info.state.first_seq)

    async def _resubscribe(self) -> None:
        """Read again from `next_seq` on a new consumer, retrying until it works (a reader
        left without a subscription would wait forever) or the reader is stopped."""
        wait = RESUBSCRIBE_FIRST_WAIT
        try:
            await self._unsubscribe()
            while not self.stopped():
                try:
                    await self._subscribe()
                except Exception as exc:  # unreachable server, consumer create timed out, ...
                    log.warning(
                        "stream %s: cannot resubscribe from seq %d (%s); trying again in %.1f s",
                        self._stream,
                        self.next_seq,
                        exc or type(exc).__name__,
                        wait,
                    )
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, RESUBSCRIBE_MAX_WAIT)
                    continue
                if self.stopped():  # stopped while the subscribe was under way
                    await self._unsubscribe()
                return
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
