"""Rebuilding the tables from the stream into a shadow DuckDB file.

The live database is never touched here: a crash (even kill -9) leaves only a partial
shadow file, which the next attempt deletes. Swapping the result in is `swap.py`'s job.

A stream with a retention (max age, bytes or messages) no longer starts at seq 1. The
rebuild then starts from a base: the newest snapshot in the Object Store whose tables reach
at least the seq before the stream's first message (ingest publishes one every few seconds,
so one is always newer than the oldest event kept), and replays the tail after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
from typing import NamedTuple

import duckdb
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from userstats.ingest import rawstream
from userstats.ingest.progress import Progress
from userstats.shared import apply, schema, snapshots, subjects
from userstats.shared.batch import REBUILD, BatchResult, BatchRunner
from userstats.shared.projection import Projector
from userstats.shared.settings import NatsSettings
from userstats.shared.stream import StreamReader
from userstats.shared.subjects import STREAM_SUBJECTS

log = logging.getLogger(__name__)

# A rebuild writes only when this many rows are pending (or at the end): counts of the same
# keys merge in memory, so 1M simulator events write ~22k rows once instead of ~175k rows in
# twenty 50k-event batches (0.13 s of DuckDB instead of 1.25 s). It also bounds memory.
MAX_PENDING_ROWS = REBUILD.max_pending_rows or 250_000
CHECK_EVERY = REBUILD.check_every  # events between two looks at the pending rows
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
    base: Base | None = None  # the snapshot it started from (a stream that lost its beginning)


@dataclass(frozen=True)
class Base:
    """A snapshot a rebuild starts from instead of seq 1."""

    object: str
    seq: int
    projection_version: int
    path: Path

    def describe(self, first_seq: int) -> str:
        """What a rebuild from this base recomputes, and what it cannot."""
        text = (
            f"the stream starts at seq {first_seq} (its retention removed 1..{first_seq - 1}): starting from "
            f"snapshot {self.object} (tables at seq {self.seq}, projection version "
            f"{self.projection_version}) and replaying seq {self.seq + 1} on"
        )
        if self.projection_version != schema.PROJECTION_VERSION:
            text += (
                f". Projection version {schema.PROJECTION_VERSION} differs from the base's "
                f"{self.projection_version}: its rules apply to events from seq {self.seq + 1} on only; "
                f"what events up to seq {self.seq} contributed stays as version {self.projection_version} "
                "counted it, since those events are gone (keep more history with a larger retention, "
                "or none, to recompute everything)"
            )
        return text


async def find_base(js: JetStreamContext, first_seq: int, target: int, workdir: Path) -> Base | None:
    """Download the newest snapshot with first_seq - 1 <= seq <= target (None if there is none)."""
    try:
        obs = await js.object_store(subjects.SNAPSHOT_BUCKET)
        infos = await obs.list()
    except Exception as exc:  # no bucket, or an empty one
        log.debug("listing snapshots: %s", exc)
        return None
    candidates = []
    for info in infos:
        parts = (info.name or "").split("-")
        if info.deleted or len(parts) < 3 or parts[0] != "snapshot" or not parts[1].isdigit():
            continue
        if first_seq - 1 <= int(parts[1]) <= target:
            candidates.append((int(parts[1]), info))
    for _, info in sorted(candidates, key=lambda c: c[0], reverse=True):
        path = workdir / f"base-{info.name}.duckdb"
        pointer = snapshots.SnapshotPointer(
            0, info.name, 0, "", int(info.size or 0), snapshots.digest_hex(info.digest) or "", ""
        )
        try:
            await snapshots.download(js, pointer, path, timeout=60)
            con = duckdb.connect(str(path), read_only=True)
            try:
                row = con.execute(f"SELECT seq, projection_version FROM {schema.CHECKPOINT_TABLE}").fetchone()
            finally:
                con.close()
        except (snapshots.SnapshotError, duckdb.Error, OSError) as exc:
            log.warning("snapshot %s cannot be a base: %s", info.name, exc)
            path.unlink(missing_ok=True)
            continue
        assert row is not None
        return Base(info.name, int(row[0]), int(row[1]), path)
    return None


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
    target = last if to_seq is None else min(to_seq, last)
    for leftover in (dest, Path(f"{dest}.wal")):
        leftover.unlink(missing_ok=True)  # a previous attempt that died
    started = time.monotonic()
    base = None
    if first > 1:
        base = await find_base(js, first, target, dest.parent)
        if base is None:
            raise RebuildError(
                f"stream {stream} starts at seq {first}: messages 1..{first - 1} were removed by its limits "
                "(max_msgs / max_bytes / max_age), and no snapshot in the Object Store reaches seq "
                f"{first - 1} (or is at most seq {target}), so the tables cannot be rebuilt from the log "
                "alone. Raise the limits for the future; the current tables and snapshots stay valid."
            )
        log.log(
            logging.WARNING if base.projection_version != schema.PROJECTION_VERSION else logging.INFO,
            "%s",
            base.describe(first),
        )
    try:
        return await _build(
            js, stream, dest, target, base, progress, threads, nats, max_pending_rows, started
        )
    finally:
        if base is not None:
            base.path.unlink(missing_ok=True)


async def _build(
    js: JetStreamContext,
    stream: str,
    dest: Path,
    target: int,
    base: Base | None,
    progress: Progress | None,
    threads: int,
    nats: NatsSettings | None,
    max_pending_rows: int,
    started: float,
) -> RebuildResult:
    generation = uuid.uuid4().hex
    start = base.seq + 1 if base is not None else 1
    progress = progress or Progress(start, target)
    progress.start = start
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    # Default one DuckDB thread: the two Python processes and nats-server fill two cores.
    base_path = str(base.path) if base is not None else ""
    job = WorkerJob(str(dest), generation, threads, max_pending_rows, base_path, target)
    worker = ctx.Process(target=_worker, args=(job, child), daemon=True)
    worker.start()
    child.close()
    try:
        try:
            reader = await _feed(js, stream, start, target, parent, progress, nats, worker.is_alive)
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
    events = target - start + 1
    return RebuildResult(dest, target, events, time.monotonic() - started, dead, generation, reader, base)


class _WorkerGone(Exception):
    """The worker process stopped taking batches (it failed, or was killed)."""


async def _feed(
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

    With the connection settings, the fast reader (ingest/rawstream.py) reads; without them,
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
    seq = start - 1
    try:
        if start <= target and nats is not None:  # start > target: the base is at the target
            try:
                seq = await rawstream.read_range(js, nats, stream, STREAM_SUBJECTS, start, target, deliver)
            except rawstream.RawConnectError as exc:
                log.warning("fast stream reader unavailable (%s); reading through nats-py", exc)
                nats = None
            except rawstream.RawReadError as exc:
                raise RebuildError(f"reading the stream failed: {exc}") from exc
        if nats is None and start <= target:
            seq = await _feed_nats_py(js, stream, start, target, deliver)
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
            if items and items[-1].seq > target:
                items = [it for it in items if it.seq <= target]
            if items:
                seq = items[-1].seq
                seqs, subjects, data, times = (list(col) for col in zip(*items, strict=True))
                await deliver((seqs, subjects, data, times))
    finally:
        await reader.stop()
    return seq


class WorkerJob(NamedTuple):
    """What the worker process builds (sent to it when it starts)."""

    dest: str
    generation: str
    threads: int
    max_pending_rows: int
    base: str = ""  # a base snapshot file to start from, or none
    target: int = 0  # the last seq the parent reads


def _worker(job: WorkerJob, conn: Connection) -> None:
    """Project what the parent sends and write it in large batches (a separate process).

    Sends (dead letters, last seq) when done, or the error message if it fails.
    """
    try:
        _work(job, conn)
    except Exception as exc:
        with contextlib.suppress(OSError):
            conn.send(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        conn.close()


def _work(job: WorkerJob, conn: Connection) -> None:
    con = duckdb.connect(job.dest, config={"threads": job.threads})
    apply.create_schema(con, job.generation)
    if job.base:
        load_base(con, Path(job.base))
        cp = apply.read_checkpoint(con)
        proj = Projector(apply.load_state(con), cp.seq, cp.event_time_us)
    else:
        proj = Projector()
    runner = BatchRunner(proj, dataclasses.replace(REBUILD, max_pending_rows=job.max_pending_rows))
    dead = 0
    with ThreadPoolExecutor(1) as writer:
        pending: Future[BatchResult] | None = None
        decode = msgspec.msgpack.Decoder(Columns).decode
        while message := conn.recv_bytes():
            runner.project(zip(*decode(message), strict=True))
            if not runner.full():
                continue
            taken = runner.take()
            if pending is not None:
                dead += pending.result().dead_letters
            pending = writer.submit(BatchRunner.write, con, taken)
        if pending is not None:
            dead += pending.result().dead_letters
    last = runner.take()
    # the parent read up to the target (messages deleted at the end were not sent)
    last = last._replace(seq=max(last.seq, job.target))
    result = BatchRunner.write(con, last)
    dead += result.dead_letters
    con.execute("CHECKPOINT")
    con.close()
    conn.send((dead, result.seq))
    conn.close()


def load_base(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Fill the new, empty tables from a snapshot file and take over its checkpoint (with this
    version and the new generation). A table the base lacks (added since) starts empty; one
    whose columns differ cannot be continued from, and the rebuild says so."""
    con.execute(f"ATTACH '{path}' AS base (READ_ONLY)")
    try:
        have: dict[str, list[str]] = {}
        for table, column in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'base' "
            "ORDER BY table_name, column_index"
        ).fetchall():
            have.setdefault(table, []).append(column)
        for spec in schema.TABLES:
            if spec.name not in have:
                continue
            want = [c.name for c in spec.columns]
            if have[spec.name] != want:
                raise RebuildError(
                    f"the base snapshot's table {spec.name} has columns {have[spec.name]}, this version "
                    f"{want}: it cannot be continued from; keep the stream's full history to rebuild"
                )
            con.execute(f"INSERT INTO main.{spec.name} SELECT * FROM base.{spec.name}")
        row = con.execute(f"SELECT seq, event_time_us FROM base.{schema.CHECKPOINT_TABLE}").fetchone()
        assert row is not None
        con.execute(
            f"UPDATE {schema.CHECKPOINT_TABLE} SET seq = ?, event_time_us = ?, projection_version = ?",
            [int(row[0]), int(row[1]), schema.PROJECTION_VERSION],
        )
    finally:
        con.execute("DETACH base")
