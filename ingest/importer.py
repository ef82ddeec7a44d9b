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
import hashlib
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

import msgspec
from nats.aio.client import Client
from userstats.ingest.journal import Journal
from userstats.ingest.maintenance import admin
from userstats.ingest.progress import Progress
from userstats.ingest.stream_setup import ensure_stream
from userstats.shared import events as ev
from userstats.shared import natsconn
from userstats.shared.projection import MAX_IMPORT_TIME_US
from userstats.shared.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "kryten-userstats"
ROWS_PER_EVENT = 1000
MAX_EVENT_BYTES = 256 * 1024  # well under NATS's default 1 MB max_payload

# What a 0.7.1 database has (spec 3.18). `users` and `message_counts` must be there for a
# file to count as a kryten-userstats database; the others may be missing in old versions.
REQUIRED = ("users", "message_counts")
COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("username", "first_seen_at", "last_seen_at"),
    "message_counts": ("username", "channel", "domain", "message_count"),
    "pm_counts": ("username", "pm_count"),
    "kudos_plusplus": ("username", "channel", "domain", "kudos_count"),
    "kudos_phrases": ("username", "channel", "domain", "phrase", "kudos_count"),
    "emote_usage": ("username", "channel", "domain", "emote", "usage_count"),
    "user_activity": ("username", "channel", "domain", "total_time_seconds", "not_afk_time_seconds"),
    "media_changes": ("id", "channel", "domain", "timestamp", "media_title", "media_type", "media_id"),
    "population_snapshots": ("channel", "domain", "timestamp", "connected_count", "chat_count"),
    "movie_votes": (
        "channel",
        "domain",
        "media_title",
        "media_type",
        "media_id",
        "username",
        "vote",
        "timestamp",
    ),
    "user_aliases": ("username", "alias"),
    "kudos_trigger_phrases": ("phrase",),
    "population_watermarks": ("channel", "domain", "timestamp", "total_users", "chat_users", "is_high_mark"),
}
# Read and counted, but not imported; the summary says why.
NOT_IMPORTED = {
    "kudos_trigger_phrases": "trigger phrases come from the config (kudos.default_phrases): "
    "copy them there if they differ",
    "population_watermarks": "derived: high and low marks are computed from the imported "
    "population snapshots",
}


class SourceError(Exception):
    """The file cannot be imported; the message says why."""


class Skip(Exception):
    """One row is not imported; the message is the reason shown in the summary."""


@dataclass
class TableReport:
    read: int = 0
    imported: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class Report:
    path: Path
    tables: dict[str, TableReport] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    events: int = 0
    duplicates: int = 0  # dropped by the stream's dedupe window: published moments ago
    first_seq: int = 0
    last_seq: int = 0
    trigger_phrases: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(t.read for t in self.tables.values())

    def format(self, dry_run: bool) -> str:
        verb = "would import" if dry_run else "imported"
        lines = [f"{self.path}: {verb}", f"  {'table':<22} {'read':>9} {'imported':>9} {'skipped':>8}"]
        for name, t in self.tables.items():
            skipped = sum(t.skipped.values())
            lines.append(f"  {name:<22} {t.read:>9,} {t.imported:>9,} {skipped:>8,}")
            for reason, n in sorted(t.skipped.items()):
                lines.append(f"      {n:,} skipped: {reason}")
        for name in self.missing:
            lines.append(f"  {name:<22} not in this file (older kryten-userstats); nothing to import")
        if self.trigger_phrases:
            lines.append(f"  trigger phrases in the file: {', '.join(self.trigger_phrases)}")
        if not dry_run:
            span = f"seq {self.first_seq}..{self.last_seq}" if self.events else "nothing new"
            lines.append(f"  {self.events} journal event(s) appended ({span})")
            if self.duplicates:
                lines.append(
                    f"  {self.duplicates} event(s) were already in the stream (same rows published "
                    "within its 2-minute dedupe window) and were not stored again"
                )
        return "\n".join(lines)


def open_source(path: Path) -> tuple[sqlite3.Connection, list[str]]:
    """Open read-only and check it is a kryten-userstats database; returns the present tables."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        con, names = _connect(path, immutable=False)
    except sqlite3.OperationalError as exc:
        # A WAL-mode file (0.7.1 uses WAL) in a read-only place cannot be opened read-only:
        # SQLite wants to create its -shm file. With no pending log it is safe to read as is.
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise SourceError(
                f"{path} cannot be opened read-only here ({exc}) and its write-ahead log {wal.name} "
                "holds changes not yet in the file: copy both files to a writable directory and "
                "import from there (stop kryten-userstats first)"
            ) from exc
        try:
            con, names = _connect(path, immutable=True)
        except sqlite3.DatabaseError as exc2:
            raise SourceError(f"{path} cannot be read: {exc2}") from exc2
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{path} is not an SQLite database ({exc})") from exc
    absent = [t for t in REQUIRED if t not in names]
    if absent:
        con.close()
        raise SourceError(
            f"{path} is not a kryten-userstats database: it has no {' or '.join(absent)} table "
            f"(tables found: {', '.join(sorted(names)) or 'none'})"
        )
    present = [t for t in COLUMNS if t in names]
    for table in present:
        have = {r[1] for r in con.execute(f"PRAGMA table_info({table})")}
        lacking = [c for c in COLUMNS[table] if c not in have]
        if lacking:
            con.close()
            raise SourceError(
                f"{path} is not a kryten-userstats 0.7.1 database: table {table} lacks "
                f"column(s) {', '.join(lacking)}"
            )
    return con, present


def _connect(path: Path, immutable: bool) -> tuple[sqlite3.Connection, set[str]]:
    uri = f"file:{pathname2url(str(path.resolve()))}?mode=ro" + ("&immutable=1" if immutable else "")
    con = sqlite3.connect(uri, uri=True)
    try:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        con.close()
        raise
    return con, names


def parse_time(value: object) -> int:
    """A 0.7.1 wall-clock string (2025-12-05T17:00:11.413200+00:00) in epoch microseconds."""
    if not isinstance(value, str) or not value:
        raise Skip("missing timestamp")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Skip("unreadable timestamp") from None
    us = ev.to_us(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
    if not 0 <= us < MAX_IMPORT_TIME_US:
        raise Skip("timestamp outside 1970..2112")
    return us


def _text(value: object, what: str, empty_ok: bool = False) -> str:
    if value is None:
        if empty_ok:
            return ""
        raise Skip(f"no {what}")
    text = str(value)
    if not text and not empty_ok:
        raise Skip(f"empty {what}")
    return text


def _count(value: object, what: str = "count") -> int:
    if value is None:
        return 0  # the column's DEFAULT 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise Skip(f"{what} is not an integer")
    if value < 0:
        raise Skip(f"negative {what}")
    return value


Row = tuple[Any, ...]
Convert = Callable[[Row], tuple[str, Any]]


def _user(r: Row) -> tuple[str, Any]:
    return "users", ev.ImportUser(_text(r[0], "username"), parse_time(r[1]), parse_time(r[2]))


def _counter(kind: ev.CountKind, with_item: bool) -> Convert:
    def convert(r: Row) -> tuple[str, Any]:
        if kind == "pm":
            return "counts", ev.ImportCount(kind, _text(r[0], "username"), "", "", "", _count(r[1]))
        item = _text(r[3], "phrase or emote") if with_item else ""
        n = _count(r[4] if with_item else r[3])
        return "counts", ev.ImportCount(
            kind, _text(r[0], "username"), _text(r[1], "channel"), _text(r[2], "domain"), item, n
        )

    return convert


def _activity(r: Row) -> tuple[str, Any]:
    total, active = _count(r[3], "total time"), _count(r[4], "not-AFK time")
    return "counts", ev.ImportCount(
        "activity", _text(r[0], "username"), _text(r[1], "channel"), _text(r[2], "domain"), "", total, active
    )


def _media(r: Row) -> tuple[str, Any]:
    return "media", ev.ImportMedia(
        int(r[0]),
        _text(r[1], "channel"),
        _text(r[2], "domain"),
        parse_time(r[3]),
        _text(r[4], "title"),
        _text(r[5], "media type", empty_ok=True),
        _text(r[6], "media id", empty_ok=True),
    )


def _population(r: Row) -> tuple[str, Any]:
    return "population", ev.ImportPopulation(
        _text(r[0], "channel"), _text(r[1], "domain"), parse_time(r[2]), _count(r[3]), _count(r[4])
    )


def _vote(r: Row) -> tuple[str, Any]:
    vote = r[6]
    if vote not in (1, -1):
        raise Skip("vote is not +1 or -1")
    return "votes", ev.ImportVote(
        _text(r[0], "channel"),
        _text(r[1], "domain"),
        _text(r[2], "title"),
        _text(r[3], "media type", empty_ok=True),
        _text(r[4], "media id", empty_ok=True),
        _text(r[5], "username"),
        int(vote),
        parse_time(r[7]),
    )


def _alias(r: Row) -> tuple[str, Any]:
    return "aliases", ev.ImportAlias(_text(r[0], "username"), _text(r[1], "alias"))


CONVERT: dict[str, Convert] = {
    "users": _user,
    "message_counts": _counter("message", False),
    "pm_counts": _counter("pm", False),
    "kudos_plusplus": _counter("kudos_pp", False),
    "kudos_phrases": _counter("kudos_phrase", True),
    "emote_usage": _counter("emote", True),
    "user_activity": _activity,
    "media_changes": _media,
    "population_snapshots": _population,
    "movie_votes": _vote,
    "user_aliases": _alias,
}


def _select(table: str) -> str:
    order = "id" if table == "media_changes" else "rowid"
    return f"SELECT {', '.join(COLUMNS[table])} FROM {table} ORDER BY {order}"


def count_rows(con: sqlite3.Connection, tables: list[str]) -> dict[str, int]:
    return {t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}


def read_batches(
    con: sqlite3.Connection, tables: list[str], source: str, report: Report
) -> Iterator[ev.ImportBatch]:
    """The journal events for the whole file; `report` counts as they are read."""
    for table in tables:
        tr = report.tables.setdefault(table, TableReport())
        if table in NOT_IMPORTED:
            rows = con.execute(_select(table)).fetchall()
            tr.read = len(rows)
            if rows:
                tr.skipped[NOT_IMPORTED[table]] = len(rows)
            if table == "kudos_trigger_phrases":
                report.trigger_phrases = sorted(str(r[0]) for r in rows)
            continue
        convert = CONVERT[table]
        parts: dict[str, list[Any]] = {}
        pending = 0
        cursor = con.execute(_select(table))
        while chunk := cursor.fetchmany(ROWS_PER_EVENT):
            for row in chunk:
                tr.read += 1
                try:
                    kind, item = convert(row)
                except Skip as why:
                    tr.skipped[str(why)] += 1
                    continue
                tr.imported += 1
                parts.setdefault(kind, []).append(item)
                pending += 1
            if pending >= ROWS_PER_EVENT:
                yield from _events(source, table, parts)
                parts, pending = {}, 0
        if pending:
            yield from _events(source, table, parts)


def _events(source: str, table: str, parts: dict[str, list[Any]]) -> Iterator[ev.ImportBatch]:
    """One event, or several when the rows would make one too large for NATS."""
    batch = ev.ImportBatch(timestamp=datetime.now(UTC), source=source, table=table, **parts)
    ((kind, items),) = parts.items()  # each table becomes one kind of row
    if len(items) <= 1 or len(ev.encode(batch)) <= MAX_EVENT_BYTES:
        yield batch
        return
    half = len(items) // 2
    yield from _events(source, table, {kind: items[:half]})
    yield from _events(source, table, {kind: items[half:]})


def msg_id(batch: ev.ImportBatch) -> str:
    """Same rows from the same source, same id (the timestamp is left out)."""
    body = ev.encode(msgspec.structs.replace(batch, timestamp=ev.EPOCH))
    return "import-" + hashlib.sha256(body).hexdigest()[:40]


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
        reply = await admin(nc, {"command": "ping"})
        if reply is None:
            print(
                "ingest is not running: the history is in the stream and is projected when it starts "
                "(a rebuild includes it too)"
            )
            return
        if int(reply.get("seq", 0)) >= seq:
            print(f"ingest has projected the import (seq {seq}); queries include it now")
            return
        if time.monotonic() >= deadline:
            print(f"ingest is at seq {reply.get('seq')} of {seq}; it will get there (stopped waiting)")
            return
        await asyncio.sleep(0.2)
