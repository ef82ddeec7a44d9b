"""`userstats-ingest import-sqlite PATH`: bring a kryten-userstats 0.7.1 database into the log.

Every table of the 0.7.1 SQLite file (spec 3.18) is read and appended to the stream as
journal "import" events, so the projection, a rebuild and every replica see the same
history. Aggregates become baselines: importing the same source again replaces them, the
projection adding only the difference, so a second run never doubles anything. Each event
also carries a Nats-Msg-Id made from its content, so a retried publish is stored once.

The mapping, what is skipped and why, is in the README ("Importing from kryten-userstats").
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from nats.aio.client import Client
from userstats.ingest.admin import AdminRequest
from userstats.ingest.import_report import Report
from userstats.ingest.import_rows import msg_id, read_batches
from userstats.ingest.import_source import COLUMNS, SourceError, count_rows, open_source
from userstats.ingest.journal import Journal
from userstats.ingest.maintenance import admin
from userstats.ingest.progress import Progress
from userstats.ingest.stream_setup import ensure_stream
from userstats.shared import natsconn
from userstats.shared.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "kryten-userstats"


async def run_import(settings: Settings, path: Path, source: str, dry_run: bool, wait: float) -> int:
    """The CLI command: read, publish (unless dry run), wait for ingest to project, report."""
    if not source or not source.isprintable():
        raise SourceError("--source must be a non-empty name of printable characters")
    con, present = open_source(path)
    try:
        report = Report(path, missing=[t for t in COLUMNS if t not in present])
        total = sum(count_rows(con, present).values())
        progress = Progress(1, total, label="import", unit="rows")
        if dry_run:
            for _ in read_batches(con, present, source, report):
                progress.update(report.rows_read)
            progress.update(report.rows_read, final=True)
            print(report.format(dry_run=True))
            return 0
        nc = await natsconn.connect(settings.nats, "userstats-ingest-import", wait=0)
        try:
            js = nc.jetstream()
            await ensure_stream(js, settings.userstats)
            journal = Journal(js, settings.userstats.stream)
            for batch in read_batches(con, present, source, report):
                seq, duplicate = await journal.append_once(batch, msg_id(batch))
                if duplicate:
                    report.duplicates += 1
                else:
                    report.first_seq = report.first_seq or seq
                    report.last_seq = max(report.last_seq, seq)
                    report.events += 1
                progress.update(report.rows_read)
            progress.update(report.rows_read, final=True)
            print(report.format(dry_run=False))
            if report.events:
                await _wait_projected(nc, report.last_seq, wait)
            elif report.duplicates:
                print("nothing new to project")
        finally:
            await nc.drain()
    finally:
        con.close()
    return 0


async def _wait_projected(nc: Client, seq: int, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        reply = await admin(nc, AdminRequest("ping"))
        if reply is None:
            print(
                "ingest is not running: the history is in the stream and is projected when it starts "
                "(a rebuild includes it too)"
            )
            return
        if (reply.seq or 0) >= seq:
            print(f"ingest has projected the import (seq {seq}); queries include it now")
            return
        if time.monotonic() >= deadline:
            print(f"ingest is at seq {reply.seq} of {seq}; it will get there (stopped waiting)")
            return
        await asyncio.sleep(0.2)
