"""Maintenance requests to a running ingest (userstats.ingest.admin), and dead-letter listing."""

from __future__ import annotations

from datetime import UTC
from typing import Any, Literal

import duckdb
import msgspec


class AdminRequest(msgspec.Struct, frozen=True):
    command: Literal["ping", "swap", "dead_letters"]
    path: str = ""
    limit: int = 20


ADMIN_DECODER = msgspec.json.Decoder(AdminRequest)


def list_dead_letters(con: duckdb.DuckDBPyConnection, limit: int) -> dict[str, Any]:
    """The newest dead letters (raw bytes shown as text, cut to 200 characters) and the total."""
    try:
        total = con.execute("SELECT count(*) FROM dead_letters").fetchone()
        rows = con.execute(
            "SELECT seq, subject, error, raw, stream_time FROM dead_letters ORDER BY seq DESC LIMIT ?",
            [limit],
        ).fetchall()
    finally:
        con.close()
    return {
        "total": int(total[0]) if total else 0,
        "rows": [
            {
                "seq": int(seq),
                "subject": subject,
                "error": error,
                "raw": bytes(raw)[:200].decode("utf-8", errors="replace"),
                "stream_time": stream_time.replace(tzinfo=UTC).isoformat() if stream_time else None,
            }
            for seq, subject, error, raw, stream_time in rows
        ],
    }
