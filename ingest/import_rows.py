"""Converting a 0.7.1 file's rows into journal "import" events (what is skipped, and why)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from userstats.ingest.import_report import Report, TableReport
from userstats.ingest.import_source import NOT_IMPORTED, select
from userstats.shared import events as ev
from userstats.shared.projection import MAX_IMPORT_TIME_US

ROWS_PER_EVENT = 1000
MAX_EVENT_BYTES = 256 * 1024  # well under NATS's default 1 MB max_payload


class Skip(Exception):
    """One row is not imported; the message is the reason shown in the summary."""


def import_time_us(value: object) -> int:
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
    return "users", ev.ImportUser(_text(r[0], "username"), import_time_us(r[1]), import_time_us(r[2]))


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
        import_time_us(r[3]),
        _text(r[4], "title"),
        _text(r[5], "media type", empty_ok=True),
        _text(r[6], "media id", empty_ok=True),
    )


def _population(r: Row) -> tuple[str, Any]:
    return "population", ev.ImportPopulation(
        _text(r[0], "channel"), _text(r[1], "domain"), import_time_us(r[2]), _count(r[3]), _count(r[4])
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
        import_time_us(r[7]),
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


def read_batches(
    con: sqlite3.Connection, tables: list[str], source: str, report: Report
) -> Iterator[ev.ImportBatch]:
    """The journal events for the whole file; `report` counts as they are read."""
    for table in tables:
        tr = report.tables.setdefault(table, TableReport())
        if table in NOT_IMPORTED:
            rows = con.execute(select(table)).fetchall()
            tr.read = len(rows)
            if rows:
                tr.skipped[NOT_IMPORTED[table]] = len(rows)
            if table == "kudos_trigger_phrases":
                report.trigger_phrases = sorted(str(r[0]) for r in rows)
            continue
        convert = CONVERT[table]
        parts: dict[str, list[Any]] = {}
        pending = 0
        cursor = con.execute(select(table))
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
