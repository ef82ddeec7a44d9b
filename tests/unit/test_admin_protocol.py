"""The admin protocol between `userstats-ingest rebuild` / `dead-letters` / `import-sqlite` and
a running ingest: typed on both sides, with the JSON shapes of earlier versions."""

from __future__ import annotations

from pathlib import Path

import duckdb
import msgspec
from userstats.ingest.admin import (
    ADMIN_REPLY_DECODER,
    AdminReply,
    AdminRequest,
    DeadLetterList,
    answer_admin,
)
from userstats.shared import apply


async def _answer(req: bytes, tmp_path: Path, swap_seq: int = 9) -> bytes:
    db = tmp_path / "live.duckdb"
    con = duckdb.connect(str(db))
    apply.create_schema(con)
    con.execute(
        "INSERT OR REPLACE INTO dead_letters (seq, subject, error, raw, stream_time) "
        "VALUES (3, 'kryten.events.cytube.x.chatmsg', 'bad', 'not json'::BLOB, NULL)"
    )

    async def swap(path: Path) -> int:
        assert path == tmp_path / "rebuilt.duckdb"
        return swap_seq

    return await answer_admin(req, lambda: 7, db, con.cursor, swap)


async def test_ping_swap_and_dead_letters_answer_in_the_shapes_the_cli_reads(tmp_path: Path) -> None:
    db = str(tmp_path / "live.duckdb")
    ping = await _answer(msgspec.json.encode(AdminRequest("ping")), tmp_path)
    assert ping == msgspec.json.encode({"ok": True, "seq": 7, "database": db})
    (tmp_path / "rebuilt.duckdb").write_bytes(b"")
    swap = await _answer(
        msgspec.json.encode(AdminRequest("swap", path=str(tmp_path / "rebuilt.duckdb"))), tmp_path
    )
    assert ADMIN_REPLY_DECODER.decode(swap) == AdminReply(ok=True, seq=9)
    letters = ADMIN_REPLY_DECODER.decode(
        await _answer(msgspec.json.encode(AdminRequest("dead_letters", limit=5)), tmp_path)
    )
    assert isinstance(letters.dead_letters, DeadLetterList)
    assert letters.dead_letters.total == 1
    assert [(r.seq, r.error, r.raw) for r in letters.dead_letters.rows] == [(3, "bad", "not json")]


async def test_a_bad_request_and_a_missing_file_are_errors_that_say_why(tmp_path: Path) -> None:
    bad = ADMIN_REPLY_DECODER.decode(await _answer(b'{"command": "format_disk"}', tmp_path))
    assert not bad.ok and bad.error is not None and "bad admin request" in bad.error
    missing = ADMIN_REPLY_DECODER.decode(
        await _answer(msgspec.json.encode(AdminRequest("swap", path=str(tmp_path / "nope"))), tmp_path)
    )
    assert missing == AdminReply(ok=False, error=f"{tmp_path / 'nope'} does not exist on the ingest host")
