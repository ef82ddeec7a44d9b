"""Periodic index-free snapshots: DuckDB file -> Object Store -> KV pointer -> prune.

A snapshot is written from its own cursor inside one read transaction, so it is a
consistent copy at one checkpoint while the projector keeps writing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import duckdb
import msgspec
from nats.js import JetStreamContext
from userstats.ingest.metrics import IngestMetrics
from userstats.shared import apply, schema, snapshots, subjects
from userstats.shared.replication import Replication
from userstats.shared.snapshots import SnapshotPointer

log = logging.getLogger(__name__)
LOG_EVERY = 60.0  # seconds between two INFO lines about published snapshots


class Written(NamedTuple):
    """What a snapshot file holds, all read in the transaction that copied it."""

    seq: int
    event_us: int
    generation: str
    forgotten: int  # forgotten_users rows: a new one means older snapshots must go


def write_snapshot(con: duckdb.DuckDBPyConnection, dest: Path) -> Written:
    """Copy every table without indexes into a new DuckDB file, in one read transaction."""
    cur = con.cursor()
    try:
        cur.execute(f"ATTACH '{dest}' AS snap")
        try:
            cur.execute("BEGIN TRANSACTION")
            row = cur.execute(
                f"SELECT seq, event_time_us, generation FROM {schema.CHECKPOINT_TABLE}"
            ).fetchone()
            assert row is not None
            for name in schema.ALL_TABLE_NAMES:
                cur.execute(f"CREATE TABLE snap.{name} AS SELECT * FROM main.{name}")
            # in the same transaction: counted afterwards, a forget projected meanwhile was
            # credited to this snapshot, which holds the user's rows, and it outlived the forget
            forgotten = cur.execute(f"SELECT count(*) FROM snap.{schema.FORGOTTEN_USERS.name}").fetchone()
            cur.execute("COMMIT")
        finally:
            cur.execute("DETACH snap")
    finally:
        cur.close()
    return Written(int(row[0]), int(row[1]), str(row[2]), int(forgotten[0]) if forgotten else 0)


def _checkpoint(con: duckdb.DuckDBPyConnection) -> apply.Checkpoint:
    """The checkpoint, read on a cursor of its own: the projector may be on `con` itself
    in another thread (a second call there fails with "connection is busy")."""
    cur = con.cursor()
    try:
        return apply.read_checkpoint(cur)
    finally:
        cur.close()


class Snapshotter:
    def __init__(
        self,
        js: JetStreamContext,
        con: duckdb.DuckDBPyConnection,
        workdir: Path,
        metrics: IngestMetrics,
        retention: int = 3,
        replication: tuple[Replication, Replication] | None = None,
    ) -> None:
        self._js = js
        self._con = con
        self._dir = workdir
        self._metrics = metrics
        self._retention = retention
        self._replication: tuple[Replication | None, Replication | None] = replication or (None, None)
        self._published: list[str] = []
        self.last_seq = -1
        self._failures = 0
        self._retry_at = 0.0
        self._logged_at = -LOG_EVERY  # INFO for the first snapshot, then one line a minute
        self._unlogged = 0
        self._forgotten: int | None = None  # forgotten_users rows in the last snapshot published

    async def publish(self) -> SnapshotPointer:
        """Write, upload and point to a snapshot of the current tables."""
        started = time.perf_counter()
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._dir / f"snapshot-{uuid.uuid4().hex}.duckdb"
        try:
            seq, event_us, generation, forgotten = await asyncio.to_thread(write_snapshot, self._con, path)
            sha = await asyncio.to_thread(snapshots.file_sha256, path)
            name = f"snapshot-{seq:012d}-{uuid.uuid4().hex[:8]}"
            obs, kv = await snapshots.ensure_buckets(self._js, *self._replication)
            size = await snapshots.upload(obs, name, path)
        finally:
            path.unlink(missing_ok=True)
        pointer = SnapshotPointer(
            seq=seq,
            object=name,
            projection_version=schema.PROJECTION_VERSION,
            generation=generation,
            size=size,
            sha256=sha,
            created_at=datetime.now(UTC).isoformat(),
            event_time_us=event_us,
        )
        await kv.put(subjects.POINTER_KEY, msgspec.json.encode(pointer))
        self._published.append(name)
        keep = self._published[-self._retention :]
        if forgotten and forgotten != self._forgotten:
            keep = [name]  # a user was forgotten: no older snapshot may keep their rows
        self._forgotten = forgotten
        self._published = keep
        pruned = await snapshots.prune(obs, keep)
        self.last_seq = seq
        elapsed = time.perf_counter() - started
        self._metrics.snapshot_seconds.observe(elapsed)
        self._metrics.snapshot_bytes.set(size)
        self._metrics.snapshot_seq.set(seq)
        self._metrics.snapshots.inc()
        # With traffic a snapshot goes out every snapshot_interval_seconds (2 s): one INFO line
        # a minute says they do, and each one is logged at DEBUG.
        line = f"snapshot {name} published: seq {seq}, {size / 1e6:.1f} MB, {elapsed:.2f} s"
        line += f", {pruned} old pruned" if pruned else ""
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            more = f" ({self._unlogged} more since the last such line)" if self._unlogged else ""
            log.info("%s%s", line, more)
            self._logged_at, self._unlogged = now, 0
        else:
            self._unlogged += 1
            log.debug("%s", line)
        return pointer

    async def run(self, stop: asyncio.Event, interval: float, current_seq: Callable[[], int]) -> None:
        """Publish now unless the pointer already shows these tables, then every `interval` s
        if the checkpoint moved. The first snapshot lets replicas start; later ones only
        bound how much of the stream a new replica has to follow. Between publishes the
        pointer is checked: a missing or corrupt object, or a pointer ingest did not write
        for these tables, makes it publish again so replicas always have a good one."""
        try:
            pointer = await snapshots.read_pointer(self._js)
            problem = await self.check(pointer)
            if problem is None and pointer is not None and pointer.seq == current_seq():
                self.last_seq = pointer.seq
            elif problem is not None and pointer is not None:
                # Other tables than the pointer's is the normal case after a rebuild (swapped in,
                # or for a new projection version) or with a new database; a bad object is not.
                cp = await asyncio.to_thread(_checkpoint, self._con)
                other = pointer.generation != cp.generation
                log.log(logging.INFO if other else logging.WARNING, "%s: publishing a new snapshot", problem)
        except Exception as exc:  # cannot tell: publishing once more does no harm
            log.debug("reading the snapshot pointer: %s", exc)
        if self.last_seq != current_seq():
            await self._publish_logged()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
                return
            except TimeoutError:
                pass
            if current_seq() != self.last_seq:
                await self._publish_logged()
                continue
            try:
                problem = await self.check(await snapshots.read_pointer(self._js))
            except Exception as exc:  # NATS away: check next time
                log.debug("checking the snapshot pointer: %s", exc)
                continue
            if problem is not None:
                self._metrics.snapshot_repairs.inc()
                log.warning("%s: publishing a new snapshot", problem)
                await self._publish_logged()

    async def check(self, pointer: SnapshotPointer | None) -> str | None:
        """Why the pointer does not name a good snapshot of these tables, or None."""
        if pointer is None:
            return "no snapshot pointer"
        cp = await asyncio.to_thread(_checkpoint, self._con)
        if pointer.generation != cp.generation or pointer.projection_version != schema.PROJECTION_VERSION:
            return (
                f"the snapshot pointer names {pointer.object} of generation {pointer.generation[:8]} "
                f"(version {pointer.projection_version}), not these tables ({cp.generation[:8]}, "
                f"version {schema.PROJECTION_VERSION})"
            )
        return await snapshots.check_object(self._js, pointer)

    async def _publish_logged(self) -> None:
        """Publish; after a failure (disk full, NATS away) wait longer before each retry."""
        if time.monotonic() < self._retry_at:
            return
        try:
            await self.publish()
            self._failures = 0
        except Exception as exc:  # a failed snapshot must not stop ingest
            self._metrics.snapshot_failures.inc()
            self._failures += 1
            delay = min(30.0, 2.0**self._failures)
            self._retry_at = time.monotonic() + delay
            log.error(
                "snapshot failed: %s (next attempt in %.0f s or later)", str(exc).splitlines()[0], delay
            )
