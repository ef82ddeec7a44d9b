"""Rebuilding the tables from the stream into a shadow DuckDB file.

The live database is never touched here: a crash (even kill -9) leaves only a partial
shadow file, which the next attempt deletes. Swapping the result in is `swap.py`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import queue
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import duckdb
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from userstats.ingest.progress import Progress
from userstats.ingest.stream_setup import STREAM_SUBJECTS
from userstats.shared import apply, rawstream, subjects
from userstats.shared import events as ev
from userstats.shared.delta import Delta
from userstats.shared.projection import DEAD_LETTERS_KEY, PM_EVENT, Projector
from userstats.shared.settings import NatsSettings
from userstats.shared.stream import StreamReader

log = logging.getLogger(__name__)

# A rebuild writes only when this many rows are pending (or at the end): counts of the same
# keys merge in memory, so 1M simulator events write ~22k rows once instead of ~175k rows in
# twenty 50k-event batches (0.13 s of DuckDB instead of 1.25 s). It also bounds memory.
MAX_PENDING_ROWS = 250_000
CHECK_EVERY = 10_000  # events between two looks at the pending rows
Columns = rawstream.Columns  # seqs, subjects, data, stored times (us)


class RebuildError(Exception):
    """The rebuild cannot be done as asked; the message says why and what to do."""


@dataclass(frozen=True)
class RebuildResult:
    path: Path
    seq: int
    events: int
    seconds: float
    dead_letters: int
    generation: str
    reader: str = "fast"  # which stream reader did it: "fast" (rawstream) or "nats-py"


async def build_shadow(
    js: JetStreamContext,
    stream: str,
    dest: Path,
    to_seq: int | None = None,
    progress: Progress | None = None,
    threads: int = 1,
    nats: NatsSettings | None = None,
    max_pending_rows: int = MAX_PENDING_ROWS,
) -> RebuildResult:
    """Project the stream from seq 1 up to `to_seq` (default: its last seq now) into `dest`.

    This process reads the stream; a worker process projects and writes. Receiving and
    projecting are both Python-heavy, and in two processes they run on two cores.
    """
    info = await js.stream_info(stream)
    first, last = int(info.state.first_seq), int(info.state.last_seq)
    if first > 1 and not await _head_was_erased(js, stream, first):
        raise RebuildError(
            f"stream {stream} starts at seq {first}: messages 1..{first - 1} were removed by its limits "
            "(max_msgs / max_bytes / max_age), so the tables cannot be rebuilt from the log alone. "
            "Raise the limits for the future; the current tables and snapshots stay valid."
        )
    target = last if to_seq is None else min(to_seq, last)
    for leftover in (dest, Path(f"{dest}.wal")):
        leftover.unlink(missing_ok=True)  # a previous attempt that died
    generation = uuid.uuid4().hex
    started = time.monotonic()
    progress = progress or Progress(1, target)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    # Default one DuckDB thread: the two Python processes and nats-server fill two cores.
    worker = ctx.Process(
        target=_worker, args=(str(dest), generation, threads, child, max_pending_rows, target), daemon=True
    )
    worker.start()
    child.close()
    try:
        try:
            reader = await _feed(js, stream, target, parent, progress, nats, worker.is_alive)
            result = await asyncio.to_thread(parent.recv)
        except (EOFError, BrokenPipeError, _WorkerGone) as exc:
            # it may have said why before it went
            result = parent.recv() if parent.poll(0.5) else None
            if not isinstance(result, str):
                raise RebuildError(f"the rebuild worker died (exit code {worker.exitcode})") from exc
        if isinstance(result, str):
            raise RebuildError(f"the rebuild failed writing {dest}: {result}")
        dead, seq = result
    finally:
        if worker.is_alive():
            await asyncio.to_thread(worker.join, 30)
        if worker.is_alive():
            worker.kill()
            worker.join()
        parent.close()
    if seq != target:
        raise RebuildError(f"the rebuild worker stopped at seq {seq}, expected {target}")
    return RebuildResult(dest, target, target, time.monotonic() - started, dead, generation, reader)


async def _head_was_erased(js: JetStreamContext, stream: str, first: int) -> bool:
    """Whether messages 1..first-1 are all raw PMs that ingest erased (each "pm" journal event
    names the raw seq it replaces; they come after their raw ones, in seq order), rather than
    messages the stream's limits removed."""
    want, at = 1, first
    while want < first:
        try:
            msg = await js.get_msg(stream, seq=at, subject=subjects.journal_subject(PM_EVENT), next=True)
        except NotFoundError:
            return False
        at = int(msg.seq or 0) + 1
        try:
            event = ev.JOURNAL_DECODER.decode(msg.data or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if not isinstance(event, ev.PmRedacted) or event.seq < want:
            continue
        if event.seq > want:
            return False
        want += 1
    return True


class _WorkerGone(Exception):
    """The worker process stopped taking batches (it failed, or was killed)."""


async def _feed(
    js: JetStreamContext,
    stream: str,
    target: int,
    conn: Connection,
    progress: Progress,
    nats: NatsSettings | None,
    worker_alive: Callable[[], bool] = lambda: True,
) -> str:
    """Read seq 1..target and hand it to the worker in batches, a sender thread doing the piping.

    With the connection settings, the fast reader (shared/rawstream.py) reads; without them,
    or if it cannot connect, the services' StreamReader does (about 3x slower). If the worker
    goes away, reading stops with _WorkerGone instead of waiting on a full queue forever.
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
                raise _WorkerGone()
            try:
                batches.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    async def deliver(batch: Columns) -> None:
        await asyncio.to_thread(put, batch)
        progress.update(batch[0][-1])

    sender = asyncio.get_running_loop().run_in_executor(None, send)
    seq = 0
    try:
        if nats is not None:
            try:
                seq = await rawstream.read_range(js, nats, stream, STREAM_SUBJECTS, 1, target, deliver)
            except rawstream.RawConnectError as exc:
                log.warning("fast stream reader unavailable (%s); reading through nats-py", exc)
                nats = None
            except rawstream.RawReadError as exc:
                raise RebuildError(f"reading the stream failed: {exc}") from exc
        if nats is None:
            seq = await _feed_nats_py(js, stream, target, deliver)
    finally:
        try:
            await asyncio.to_thread(put, None)
        except _WorkerGone:
            with contextlib.suppress(queue.Empty):
                while True:  # unblock the sender thread so it can see the end
                    batches.get_nowait()
            batches.put_nowait(None)
        await sender
    if failed:
        raise _WorkerGone()
    if seq < target:
        raise RebuildError(f"the stream ended at seq {seq}, before the target {target}")
    progress.update(seq, final=True)
    return "fast" if nats is not None else "nats-py"


async def _feed_nats_py(
    js: JetStreamContext, stream: str, target: int, deliver: Callable[[Columns], Awaitable[None]]
) -> int:
    reader = StreamReader(js, stream, STREAM_SUBJECTS, 1, max_buffer=200_000)
    await reader.start()
    seq = 0
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


def _worker(
    dest: str, generation: str, threads: int, conn: Connection, max_pending_rows: int, target: int
) -> None:
    """Project what the parent sends and write it in large batches (a separate process).

    Sends (dead letters, last seq) when done, or the error message if it fails.
    """
    try:
        _work(dest, generation, threads, conn, max_pending_rows, target)
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        conn.close()


def _work(
    dest: str, generation: str, threads: int, conn: Connection, max_pending_rows: int, target: int
) -> None:
    """The tables end at `target` even when its message was deleted (an erased raw PM): the
    reader has seen everything up to it by then."""
    con = duckdb.connect(dest, config={"threads": threads})
    apply.create_schema(con, generation)
    proj = Projector()
    dead = 0
    checked = 0
    with ThreadPoolExecutor(1) as writer:
        pending: Future[None] | None = None
        decode = msgspec.msgpack.Decoder(Columns).decode
        while batch := conn.recv_bytes():
            project = proj.project
            for seq, subject, data, stream_us in zip(*decode(batch), strict=True):
                project(seq, subject, data, stream_us)
            if proj.last_seq - checked >= CHECK_EVERY:
                checked = proj.last_seq
                if proj.pending_rows() < max_pending_rows:
                    continue
                delta = proj.take_delta()
                dead += _dead(delta)
                if pending is not None:
                    pending.result()
                pending = writer.submit(apply.apply_batch, con, delta, proj.last_seq, proj.last_event_us)
        if pending is not None:
            pending.result()
    delta = proj.take_delta()
    dead += _dead(delta)
    last = max(proj.last_seq, target)
    apply.apply_batch(con, delta, last, proj.last_event_us)
    con.execute("CHECKPOINT")
    con.close()
    conn.send((dead, last))
    conn.close()


def _dead(delta: Delta) -> int:
    row = delta.counters.upserts.get(DEAD_LETTERS_KEY)
    return int(row[0]) if row else 0
