"""Maintenance requests to a running ingest (userstats.ingest.admin), and dead-letter listing.

The request and the reply are Structs, used by both sides: this module answers, and
ingest/maintenance.py (rebuild, dead-letters) and ingest/importer.py ask."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import Literal

import duckdb
import msgspec


class AdminRequest(msgspec.Struct, frozen=True):
    command: Literal["ping", "swap", "dead_letters"]
    path: str = ""
    limit: int = 20


class DeadLetterRow(msgspec.Struct, frozen=True):
    seq: int
    subject: str
    error: str
    raw: str  # the bytes shown as text, cut to 200 characters (none for a PM)
    stream_time: str | None


class DeadLetterList(msgspec.Struct, frozen=True):
    total: int
    rows: list[DeadLetterRow]


class AdminReply(msgspec.Struct, frozen=True, omit_defaults=True):
    """ok with the fields of the request's answer (ping: seq and database; swap: seq;
    dead_letters: dead_letters), or not ok with the error."""

    ok: bool
    error: str | None = None
    seq: int | None = None
    database: str | None = None
    dead_letters: DeadLetterList | None = None


ADMIN_DECODER = msgspec.json.Decoder(AdminRequest)
ADMIN_REPLY_DECODER = msgspec.json.Decoder(AdminReply)


def _failed(error: str) -> bytes:
    return msgspec.json.encode(AdminReply(ok=False, error=error))


async def answer_admin(
    data: bytes,
    applied_seq: Callable[[], int],
    database: Path,
    cursor: Callable[[], duckdb.DuckDBPyConnection],
    swap: Callable[[Path], Awaitable[int]],
) -> bytes:
    """The reply to one request from `userstats-ingest rebuild` / `dead-letters` on this host:
    ping (the checkpoint and the database), dead_letters (on a new cursor), or swap (a rebuilt
    file in for the live database, waiting until it is in)."""
    try:
        req = ADMIN_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _failed(f"bad admin request: {exc}")
    if req.command == "ping":
        return msgspec.json.encode(AdminReply(ok=True, seq=applied_seq(), database=str(database)))
    if req.command == "dead_letters":
        rows = await asyncio.to_thread(list_dead_letters, cursor(), req.limit)
        return msgspec.json.encode(AdminReply(ok=True, dead_letters=rows))
    path = Path(req.path)
    if not await asyncio.to_thread(path.is_file):
        return _failed(f"{path} does not exist on the ingest host")
    try:
        seq = await swap(path)
    except Exception as exc:
        return _failed(f"swap failed: {exc}")
    return msgspec.json.encode(AdminReply(ok=True, seq=seq))


def list_dead_letters(con: duckdb.DuckDBPyConnection, limit: int) -> DeadLetterList:
    """The newest dead letters (raw bytes shown as text, cut to 200 characters) and the total."""
    try:
        total = con.execute("SELECT count(*) FROM dead_letters").fetchone()
        rows = con.execute(
            "SELECT seq, subject, error, raw, stream_time FROM dead_letters ORDER BY seq DESC LIMIT ?",
            [limit],
        ).fetchall()
    finally:
        con.close()
    return DeadLetterList(
        total=int(total[0]) if total else 0,
        rows=[
            DeadLetterRow(
                seq=int(seq),
                subject=subject,
                error=error,
                raw=bytes(raw)[:200].decode("utf-8", errors="replace"),
                stream_time=stream_time.replace(tzinfo=UTC).isoformat() if stream_time else None,
            )
            for seq, subject, error, raw, stream_time in rows
        ],
    )
