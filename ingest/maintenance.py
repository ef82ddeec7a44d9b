"""`userstats-ingest rebuild` and `userstats-ingest dead-letters`, with or without a running ingest.

A running ingest holds the DuckDB file (DuckDB allows no second opener, not even read-only),
so these talk to it over userstats.ingest.admin; otherwise they use the file directly. The
shadow file is written beside the live one, so ingest must run on this host.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import duckdb
import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from ingest.admin import list_dead_letters
from ingest.db import DatabaseError, open_writer
from ingest.metrics import IngestMetrics
from ingest.progress import Progress
from ingest.rebuild import build_shadow
from ingest.snapshotter import Snapshotter
from ingest.swap import replace_database, shadow_path
from shared import natsconn
from shared.settings import Settings
from shared.subjects import INGEST_ADMIN_SUBJECT

log = logging.getLogger(__name__)


async def admin(nc: Client, body: dict[str, Any], timeout: float = 3) -> dict[str, Any] | None:
    """Ask the running ingest; None when no ingest is running."""
    try:
        msg = await nc.request(INGEST_ADMIN_SUBJECT, msgspec.json.encode(body), timeout=timeout)
    except (NoRespondersError, NatsTimeoutError, TimeoutError):
        return None
    reply: dict[str, Any] = msgspec.json.decode(msg.data)
    return reply


async def rebuild(settings: Settings, to_seq: int | None, output: Path | None) -> int:
    live = Path(settings.database.path)
    nc = await natsconn.connect(settings.nats, "userstats-ingest-rebuild")
    try:
        js = nc.jetstream()
        running = await admin(nc, {"command": "ping"}) is not None
        if not running and output is None:
            open_writer(live, settings.userstats.duckdb_threads).close()  # fails if something holds it
        dest = output or shadow_path(live)
        info = await js.stream_info(settings.userstats.stream)
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
        print(
            f"rebuilt {result.events:,} events to seq {result.seq} in {result.seconds:.1f} s "
            f"({rate:,.0f} events/s, {result.reader} reader); {result.dead_letters} dead letter(s)"
        )
        if output is not None:
            print(f"tables as of seq {result.seq} written to {output} (nothing swapped)")
            return 0
        if running:
            reply = await admin(nc, {"command": "swap", "path": str(dest)}, timeout=150)
            if not reply or not reply.get("ok"):
                print(f"the running ingest did not swap the rebuild in: {reply}")
                return 1
            print(
                f"swapped into the running ingest at seq {reply['seq']}; "
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
            print(f"{live} replaced; snapshot {pointer.object} published for the replicas")
        log.debug("rebuild took %.1f s in all", time.monotonic() - started)
        return 0
    finally:
        await nc.drain()


async def dead_letters(settings: Settings, limit: int) -> int:
    live = Path(settings.database.path)
    nc: Client | None = None
    data: dict[str, Any] | None = None
    try:
        nc = await natsconn.connect(settings.nats, "userstats-ingest-cli")
        reply = await admin(nc, {"command": "dead_letters", "limit": limit})
        data = reply["dead_letters"] if reply and reply.get("ok") else None
    except natsconn.ConnectError:
        pass  # NATS down: ingest cannot be running either; read the file
    finally:
        if nc is not None:
            await nc.drain()
    if data is None:
        try:
            data = list_dead_letters(duckdb.connect(str(live), read_only=True), limit)
        except duckdb.Error as exc:
            raise DatabaseError(f"cannot read {live}: {exc}") from exc
    print(json.dumps(data, indent=2))
    return 0
