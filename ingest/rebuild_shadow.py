"""Rebuilding the tables from the stream into a shadow DuckDB file.

The live database is never touched here: a crash (even kill -9) leaves only a partial
shadow file, which the next attempt deletes. Swapping the result in is `db.replace_database`'s job.

This process reads the stream (rebuild_feed.py); a worker process projects and writes
(rebuild_worker.py). A stream that lost its beginning starts from a base (rebuild.py).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from nats.js import JetStreamContext
from userstats.ingest.progress import Progress
from userstats.ingest.rebuild import Base, RebuildError, find_base, head_was_erased
from userstats.ingest.rebuild_feed import WorkerGone, feed
from userstats.ingest.rebuild_worker import MAX_PENDING_ROWS, WorkerJob, worker
from userstats.shared import schema
from userstats.shared.settings import NatsSettings

log = logging.getLogger(__name__)


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
    if first > 1 and not await head_was_erased(js, stream, first):  # not only erased raw PMs
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
    process = ctx.Process(target=worker, args=(job, child), daemon=True)
    process.start()
    child.close()
    try:
        try:
            reader = await feed(js, stream, start, target, parent, progress, nats, process.is_alive)
            result = await asyncio.to_thread(parent.recv)
        except (EOFError, BrokenPipeError, WorkerGone) as exc:
            # it may have said why before it went
            result = parent.recv() if parent.poll(0.5) else None
            if not isinstance(result, str):
                raise RebuildError(f"the rebuild worker died (exit code {process.exitcode})") from exc
        if isinstance(result, str):
            raise RebuildError(f"the rebuild failed writing {dest}: {result}")
        dead, seq = result
    finally:
        if process.is_alive():
            await asyncio.to_thread(process.join, 30)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()
    if seq != target:
        raise RebuildError(f"the rebuild worker stopped at seq {seq}, expected {target}")
    events = target - start + 1
    return RebuildResult(dest, target, events, time.monotonic() - started, dead, generation, reader, base)
