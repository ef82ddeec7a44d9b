"""A rebuild's worker process: it projects what the reading process sends and writes the
shadow file in large batches (reading and projecting are both Python-heavy: in two
processes they run on two cores)."""

from __future__ import annotations

import contextlib
import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple

import duckdb
import msgspec
from userstats.ingest.rawstream import Columns
from userstats.ingest.rebuild import load_base
from userstats.shared import apply
from userstats.shared.batch import REBUILD, BatchResult, BatchRunner
from userstats.shared.projection import Projector

# A rebuild writes only when this many rows are pending (or at the end): counts of the same
# keys merge in memory, so 1M simulator events write ~22k rows once instead of ~175k rows in
# twenty 50k-event batches (0.13 s of DuckDB instead of 1.25 s). It also bounds memory.
MAX_PENDING_ROWS = REBUILD.max_pending_rows or 250_000
CHECK_EVERY = REBUILD.check_every  # events between two looks at the pending rows


class WorkerJob(NamedTuple):
    """What the worker process builds (sent to it when it starts)."""

    dest: str
    generation: str
    threads: int
    max_pending_rows: int
    base: str = ""  # a base snapshot file to start from, or none
    target: int = 0  # the last seq the parent reads


def worker(job: WorkerJob, conn: Connection) -> None:
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
