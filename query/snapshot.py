"""Where a replica's copy comes from: ingest's snapshot pointer, and the snapshot it names.

`watch_pointer` follows the pointer (a key of a JetStream KV bucket) through bucket
absence, server restarts and unreadable values, handing every decoded pointer on; `fetch`
downloads the snapshot a pointer names and copies it into a new in-memory database, with the
read model built from it when this replica can follow its tables. Which pointer to load, and
switching to it, is the replica's (query/replica.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import duckdb
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from userstats.query.model import ReadModel
from userstats.shared import apply, schema, snapshots, subjects
from userstats.shared.projection import Projector
from userstats.shared.snapshots import SnapshotPointer

log = logging.getLogger(__name__)
T = TypeVar("T")


class OnDatabase(Protocol):
    """Runs `fn(*args)` on the replica's database thread (query/tables.TableStore.db)."""

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T: ...


class Copy(NamedTuple):
    """A snapshot opened in memory, not served yet. Without a projector (and model) it is of
    another projection version: its tables can be served as they are, not followed."""

    con: duckdb.DuckDBPyConnection
    projector: Projector | None
    model: ReadModel | None
    seq: int
    event_us: int


def open_snapshot(
    path: Path, follow: bool, threads: int
) -> tuple[duckdb.DuckDBPyConnection, Projector | None, int, int]:
    """Copy a snapshot file into a new in-memory database (with keys, so it can be followed)."""
    con = duckdb.connect(":memory:", config={"threads": threads})
    con.execute(f"ATTACH '{path}' AS snap (READ_ONLY)")
    try:
        if follow:
            for stmt in schema.ddl():
                con.execute(stmt)
            for name in schema.ALL_TABLE_NAMES:
                con.execute(f"INSERT INTO main.{name} SELECT * FROM snap.{name}")
        else:  # another projection version: serve its tables as they are
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'snap'"
            ).fetchall():
                con.execute(f"CREATE TABLE main.{name} AS SELECT * FROM snap.{name}")
    finally:
        con.execute("DETACH snap")
    row = con.execute(f"SELECT seq, event_time_us FROM {schema.CHECKPOINT_TABLE}").fetchone()
    assert row is not None
    seq, event_us = int(row[0]), int(row[1])
    projector = Projector(apply.load_state(con), seq, event_us) if follow else None
    return con, projector, seq, event_us


async def fetch(
    js: JetStreamContext,
    pointer: SnapshotPointer,
    workdir: Path,
    threads: int,
    db: OnDatabase,
) -> Copy:
    """Download the snapshot `pointer` names into `workdir` and open it in memory (the
    opening on the database thread, `db`); the file is removed either way."""
    follow = pointer.projection_version == schema.PROJECTION_VERSION
    path = workdir / f"{pointer.object}.duckdb"
    try:
        await snapshots.download(js, pointer, path)
        con, projector, seq, event_us = await db(open_snapshot, path, follow, threads)
        model = await db(ReadModel.load, con) if follow else None
    finally:
        path.unlink(missing_ok=True)
    return Copy(con, projector, model, seq, event_us)


async def watch_pointer(
    js: JetStreamContext,
    stop: asyncio.Event,
    on_pointer: Callable[[SnapshotPointer], Awaitable[None]],
    loaded: Callable[[], bool],
) -> None:
    """Watch the snapshot pointer until `stop`, awaiting `on_pointer` with each value;
    `loaded` says whether a snapshot is served (else its absence is logged, once)."""
    waiting_logged = False
    while not stop.is_set():
        try:
            kv = await js.key_value(subjects.POINTER_BUCKET)
            watcher = await kv.watch(subjects.POINTER_KEY)
        except (BucketNotFoundError, NotFoundError):
            if not waiting_logged:
                log.info(
                    "waiting for ingest to publish the first snapshot (bucket %s)",
                    subjects.POINTER_BUCKET,
                )
                waiting_logged = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            continue
        try:
            await _watch(watcher, stop, on_pointer, loaded)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]


async def _watch(
    watcher: Any,
    stop: asyncio.Event,
    on_pointer: Callable[[SnapshotPointer], Awaitable[None]],
    loaded: Callable[[], bool],
) -> None:
    waiting_logged = False
    while not stop.is_set():
        try:
            entry = await watcher.updates(timeout=1.0)
        except TimeoutError:
            continue
        except Exception as exc:  # the watch broke (server restart): rewatch
            log.warning("snapshot pointer watch failed (%s); rewatching", exc)
            return
        if entry is None or entry.value is None:
            if not loaded() and not waiting_logged:
                log.info("waiting for ingest to publish the first snapshot")
                waiting_logged = True
            continue
        try:
            pointer = snapshots.POINTER_DECODER.decode(entry.value)
        except Exception as exc:
            log.error("unreadable snapshot pointer ignored: %s", exc)
            continue
        await on_pointer(pointer)
