"""A rebuild's reading side: the stream range read and piped to the worker process in batches.

With the connection settings, the fast reader (ingest/rawstream.py) reads; without them, or
if it cannot connect, the services' StreamReader does (about 3x slower).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from userstats.ingest import rawstream
from userstats.ingest.progress import Progress
from userstats.ingest.rawconn import RawConnectError
from userstats.ingest.rawstream import Columns
from userstats.ingest.rebuild import RebuildError
from userstats.shared.settings import NatsSettings
from userstats.shared.stream import StreamReader
from userstats.shared.subjects import STREAM_SUBJECTS

log = logging.getLogger(__name__)


class WorkerGone(Exception):
    """The worker process stopped taking batches (it failed, or was killed)."""


async def feed(
    js: JetStreamContext,
    stream: str,
    start: int,
    target: int,
    conn: Connection,
    progress: Progress,
    nats: NatsSettings | None,
    worker_alive: Callable[[], bool] = lambda: True,
) -> str:
    """Read seq start..target and hand it to the worker in batches, a sender thread doing the piping.

    Returns which reader read ("fast" or "nats-py"). If the worker goes away, reading stops
    with WorkerGone instead of waiting on a full queue forever.
    """
    batches: queue.Queue[Columns | None] = queue.Queue(maxsize=4)
    failed: list[BaseException] = []

    def send() -> None:
        encode = msgspec.msgpack.Encoder().encode  # C-speed, and send_bytes releases the GIL
        try:
            while (batch := batches.get()) is not None:
                conn.send_bytes(encode(batch))
            conn.send_bytes(b"")
        except OSError as exc:  # the worker closed its end
            failed.append(exc)

    def put(item: Columns | None) -> None:
        while True:
            if failed or not worker_alive():
                raise WorkerGone()
            try:
                batches.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    async def deliver(batch: Columns) -> None:
        await asyncio.to_thread(put, batch)
        progress.update(batch[0][-1])

    sender = asyncio.get_running_loop().run_in_executor(None, send)
    seq = start - 1
    try:
        if start <= target and nats is not None:  # start > target: the base is at the target
            try:
                seq = await rawstream.read_range(js, nats, stream, STREAM_SUBJECTS, start, target, deliver)
            except RawConnectError as exc:
                log.warning("fast stream reader unavailable (%s); reading through nats-py", exc)
                nats = None
            except rawstream.RawReadError as exc:
                raise RebuildError(f"reading the stream failed: {exc}") from exc
        if nats is None and start <= target:
            seq = await _feed_nats_py(js, stream, start, target, deliver)
    finally:
        try:
            await asyncio.to_thread(put, None)
        except WorkerGone:
            with contextlib.suppress(queue.Empty):
                while True:  # unblock the sender thread so it can see the end
                    batches.get_nowait()
            batches.put_nowait(None)
        await sender
    if failed:
        raise WorkerGone()
    if seq < target and not await _present(js, stream, seq + 1, target):
        seq = target  # the last messages were deleted (user.forget): nothing more to read
    if seq < target:
        raise RebuildError(f"the stream ended at seq {seq}, before the target {target}")
    progress.update(seq, final=True)
    return "fast" if nats is not None else "nats-py"


async def _present(js: JetStreamContext, stream: str, first: int, last: int) -> bool:
    """Whether the stream still holds a message in first..last."""
    try:
        msg = await js.get_msg(stream, first, subject=">", next=True)
    except NotFoundError:
        return False
    return int(msg.seq or 0) <= last


async def _feed_nats_py(
    js: JetStreamContext, stream: str, start: int, target: int, deliver: Callable[[Columns], Awaitable[None]]
) -> int:
    reader = StreamReader(js, stream, STREAM_SUBJECTS, start, max_buffer=200_000)
    await reader.start()
    seq = start - 1
    try:
        while seq < target:
            if not await reader.wait(timeout=30):
                raise RebuildError(f"the stream stopped delivering at seq {seq} (target {target})")
            items = reader.take(10_000)
            past = bool(items) and items[-1].seq > target  # the target itself may be a deleted message
            if past:
                items = [it for it in items if it.seq <= target]
            if items:
                seq = items[-1].seq
                seqs, subjects, data, times = (list(col) for col in zip(*items, strict=True))
                await deliver((seqs, subjects, data, times))
            if past or (reader.pending == 0 and not reader.buffered()):  # the rest was deleted
                seq = target
    finally:
        await reader.stop()
    return seq
