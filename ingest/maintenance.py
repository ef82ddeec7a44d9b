"""`userstats-ingest rebuild` and `userstats-ingest dead-letters`, with or without a running ingest.

A running ingest holds the DuckDB file (DuckDB allows no second opener, not even read-only),
so these talk to it over userstats.ingest.admin; otherwise they use the file directly. The
shadow file is written beside the live one, so ingest must run on this host.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import duckdb
import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError
from userstats.ingest.admin import (
    ADMIN_REPLY_DECODER,
    AdminReply,
    AdminRequest,
    DeadLetterList,
    list_dead_letters,
)
from userstats.ingest.db import DatabaseError, open_writer, replace_database, shadow_path
from userstats.ingest.metrics import IngestMetrics
from userstats.ingest.progress import Progress
from userstats.ingest.rebuild import RebuildError
from userstats.ingest.rebuild_shadow import build_shadow
from userstats.ingest.snapshotter import Snapshotter
from userstats.shared import cli, natsconn
from userstats.shared.settings import Settings
from userstats.shared.subjects import INGEST_ADMIN_SUBJECT

log = logging.getLogger(__name__)


async def admin(nc: Client, req: AdminRequest, timeout: float = 3) -> AdminReply | None:
    """Ask the running ingest; None when no ingest is running."""
    try:
        msg = await nc.request(INGEST_ADMIN_SUBJECT, msgspec.json.encode(req), timeout=timeout)
    except (NoRespondersError, NatsTimeoutError, TimeoutError):
        return None
    return ADMIN_REPLY_DECODER.decode(msg.data)


def check_output(output: Path, live: Path, force: bool) -> Path:
    """The file `--output` names, resolved; never the live database, its WAL or its shadow."""
    dest = output.expanduser().resolve()
    shadow = shadow_path(live)
    protected = {p.resolve() for p in (live, Path(f"{live}.wal"), shadow, Path(f"{shadow}.wal"))}
    same = dest.exists() and live.exists() and dest.samefile(live)
    if dest in protected or same or Path(f"{dest}.wal").resolve() in protected:
        raise RebuildError(
            f"--output {output} is the live database {live} (or its WAL or rebuild shadow): "
            "writing there would replace the tables ingest uses. Choose another file."
        )
    if not dest.parent.is_dir():
        raise RebuildError(f"--output {output}: the directory {dest.parent} does not exist")
    if dest.exists() and not force:
        raise RebuildError(f"--output {output} already exists; pass --force to replace it")
    return dest


def _live_database(configured: str, pong: AdminReply | None) -> Path:
    """The live database: where the running ingest says it is, else database.path from here."""
    if pong and pong.database:
        return Path(pong.database)
    return Path(configured).expanduser().resolve()


async def rebuild(settings: Settings, to_seq: int | None, output: Path | None, force: bool = False) -> int:
    nc = await natsconn.connect(settings.nats, "userstats-ingest-rebuild", wait=0)
    try:
        js = nc.jetstream()
        pong = await admin(nc, AdminRequest("ping"))
        running = pong is not None
        live = _live_database(settings.database.path, pong)
        if output is not None:
            dest = check_output(output, live, force)
        else:
            if not running and not live.is_file():
                raise RebuildError(
                    f"no database at {live} (database.path {settings.database.path!r}, from "
                    f"{Path.cwd()}) and no ingest running: run this where ingest runs, set "
                    "database.path / USERSTATS_DB_PATH, or write to a file with --output"
                )
            if not running:
                open_writer(live, settings.userstats.duckdb_threads).close()  # fails if something holds it
            dest = shadow_path(live)
        if not os.access(dest.parent, os.W_OK):
            raise RebuildError(f"cannot write to {dest.parent} (for {dest})")
        try:
            info = await js.stream_info(settings.userstats.stream)
        except NotFoundError:
            raise RebuildError(
                f"stream {settings.userstats.stream} does not exist: nothing to rebuild from"
            ) from None
        target = min(to_seq, int(info.state.last_seq)) if to_seq else int(info.state.last_seq)
        started = time.monotonic()
        result = await build_shadow(
            js,
            settings.userstats.stream,
            dest,
            target,
            Progress(1, target),
            settings.userstats.duckdb_threads,
            settings.nats,
        )
        rate = result.events / max(result.seconds, 1e-9)
        cli.emit(
            f"rebuilt {result.events:,} events to seq {result.seq} in {result.seconds:.1f} s "
            f"({rate:,.0f} events/s, {result.reader} reader); {result.dead_letters} dead letter(s)"
        )
        if output is not None:
            cli.emit(f"tables as of seq {result.seq} written to {dest} (the live database is unchanged)")
            return 0
        if running:
            reply = await admin(nc, AdminRequest("swap", path=str(dest)), timeout=150)
            if not reply or not reply.ok:
                why = reply.error if reply else "no ingest answered"
                print(f"the running ingest did not swap the rebuild in: {why}", file=sys.stderr)
                return 1
            cli.emit(
                f"swapped into the running ingest at seq {reply.seq}; "
                "it is catching up and publishing a snapshot"
            )
        else:
            replace_database(dest, live)
            con = open_writer(live, settings.userstats.duckdb_threads)
            try:
                snap = Snapshotter(
                    js, con, live.parent / "snapshots", IngestMetrics(), settings.userstats.snapshot_retention
                )
                pointer = await snap.publish()
            finally:
                con.close()
            cli.emit(f"{live} replaced; snapshot {pointer.object} published for the replicas")
        log.debug("rebuild took %.1f s in all", time.monotonic() - started)
        return 0
    finally:
        await nc.drain()


async def dead_letters(settings: Settings, limit: int) -> int:
    """Through the running ingest if there is one; else straight from the file."""
    nc: Client | None = None
    data: DeadLetterList | None = None
    pong: AdminReply | None = None
    try:
        nc = await natsconn.connect(settings.nats, "userstats-ingest-cli", wait=0)
        pong = await admin(nc, AdminRequest("ping"))
        reply = await admin(nc, AdminRequest("dead_letters", limit=limit)) if pong else None
        data = reply.dead_letters if reply and reply.ok else None
    except natsconn.ConnectError as exc:
        log.info("%s; reading the database file instead", exc)
    finally:
        if nc is not None:
            await nc.drain()
    if data is None:
        live = _live_database(settings.database.path, pong)
        if not live.is_file():
            raise DatabaseError(
                f"no database at {live} (database.path {settings.database.path!r}, from {Path.cwd()}) "
                "and no running ingest answered: run this where ingest runs, or set "
                "database.path / USERSTATS_DB_PATH"
            )
        try:
            data = list_dead_letters(duckdb.connect(str(live), read_only=True), limit)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise DatabaseError(f"cannot read {live}: {first} (is an ingest holding it?)") from exc
    cli.emit(json.dumps(msgspec.to_builtins(data), indent=2))
    return 0
