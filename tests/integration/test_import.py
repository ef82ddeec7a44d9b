"""Issue 10: `userstats-ingest import-sqlite` brings a kryten-userstats 0.7.1 database's history in.

The 0.7.1 database is written by 0.7.1's own code, and "what 0.7.1 answered" comes from its
own command handlers over that file (testbed/kus071.py), compared with the replies
of a live replica after the import.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from userstats.shared.subjects import DEFAULT_STREAM

from testbed.harness import Stack, caught_up, chat_envelope, connect, request, stored, stream_last_seq
from testbed.kus071 import CHANNELS, DOMAIN, OTHER_DOMAIN, Reference
from tests.integration.streamtools import dump as dump_con
from tests.integration.streamtools import dump_file, read_stream, rebuild


def run_cli(stack: Stack, *args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "userstats.ingest", *args],
        check=False,
        env=stack.env(),
        capture_output=True,
        text=True,
        cwd=stack.tmp,
        timeout=180,
    )
    return proc.returncode, proc.stdout + proc.stderr


def canonical(value: Any) -> Any:
    """Order-free form of a reply: 0.7.1 leaves the order of equal counts to SQLite, so lists
    of rows are compared as sorted multisets (their order by count is checked separately)."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def assert_ranked(value: Any) -> None:
    """Every list of rows with a `count` is in descending count order, as 0.7.1's ORDER BY is."""
    if isinstance(value, dict):
        for v in value.values():
            assert_ranked(v)
    elif isinstance(value, list):
        counts = [v["count"] for v in value if isinstance(v, dict) and "count" in v]
        assert counts == sorted(counts, reverse=True), value
        for v in value:
            assert_ranked(v)


async def ours(nc: Client, command: str, **params: Any) -> Any:
    reply = await request(nc, {"service": "userstats", "command": command, **params})
    assert reply["success"] is True, reply
    return reply["data"]


SYSTEM_FIELDS = (
    "total_users",
    "total_messages",
    "total_pms",
    "total_kudos",
    "total_emotes",
    "total_media_changes",
)


EXTRA_KEYS = {"user.stats": {"aliases", "first_seen", "last_seen"}, "user.kudos": {"total_received"}}


async def compare(nc: Client, ref: Reference, names: list[str]) -> int:
    """Ask both for the same things; returns how many answers were compared."""
    asked: list[tuple[str, dict[str, Any]]] = []
    lowered = [n.lower() for n in names]
    for name in [n for n in names if lowered.count(n.lower()) == 1]:
        asked.append(("user.stats", {"username": name, "domain": DOMAIN}))
        asked.append(("user.stats", {"username": name, "domain": DOMAIN, "channel": CHANNELS[0]}))
        asked.append(("user.kudos", {"username": name, "domain": DOMAIN}))
    for domain in (DOMAIN, OTHER_DOMAIN):
        asked.append(("leaderboard.kudos", {"domain": domain, "limit": 1000}))
        asked.append(("leaderboard.emotes", {"domain": domain, "limit": 1000}))
        for channel in CHANNELS:
            asked.append(("leaderboard.messages", {"channel": channel, "domain": domain, "limit": 1000}))
    for channel in CHANNELS:
        asked.append(("channel.media_history", {"channel": channel, "domain": DOMAIN, "limit": 1000}))
        asked.append(("channel.watermarks", {"channel": channel, "domain": DOMAIN}))
        asked.append(("channel.movie_votes", {"channel": channel, "domain": DOMAIN}))
    asked.append(("alias.list", {}))
    for command, params in asked:
        mine, theirs = await ours(nc, command, **params), await ref.answer(command, **params)
        assert_ranked(mine)
        if isinstance(mine, dict) and isinstance(theirs, dict):  # keys beyond 0.7.1 (for kryten-shell)
            assert set(mine) - set(theirs) <= EXTRA_KEYS.get(command, set()), (command, params)
            mine = {k: v for k, v in mine.items() if k in theirs}
        assert canonical(mine) == canonical(theirs), (command, params)
    # A short leaderboard: ties at the cut may pick other names, never other counts.
    for channel in CHANNELS:
        params = {"channel": channel, "domain": DOMAIN, "limit": 5}
        mine, theirs = (
            await ours(nc, "leaderboard.messages", **params),
            await ref.answer("leaderboard.messages", **params),
        )
        assert [r["count"] for r in mine["leaderboard"]] == [r["count"] for r in theirs["leaderboard"]]
    mine, theirs = await ours(nc, "system.stats"), await ref.answer("system.stats")
    assert {k: mine[k] for k in SYSTEM_FIELDS} == {k: theirs[k] for k in SYSTEM_FIELDS}
    return len(asked) + 3


async def compare_case_twins(nc: Client, ref: Reference) -> None:
    """0.7.1 holds `Alice` and `alice` as two users and matches query names exactly; userstats
    matches them case-insensitively (a DESIGN difference, in the README), so its answer for
    either spelling is the sum of 0.7.1's two, under the spelling seen first."""
    for asked in ("Alice", "alice"):
        mine = await ours(nc, "user.stats", username=asked, domain=DOMAIN)
        a = await ref.answer("user.stats", username="Alice", domain=DOMAIN)
        b = await ref.answer("user.stats", username="alice", domain=DOMAIN)
        assert mine["username"] == "Alice"
        assert mine["pms"] == a["pms"] + b["pms"]
        assert mine["kudos_plusplus"] == a["kudos_plusplus"] + b["kudos_plusplus"]
        for field in ("all_messages", "emotes", "kudos_phrases"):
            assert sum(r["count"] for r in mine[field]) == sum(r["count"] for r in a[field] + b[field])


def chat(user: str, channel: str, text: str) -> tuple[str, bytes]:
    return chat_envelope(user, text, channel=channel, domain=DOMAIN, time_us=1_900_000_000_000_000)


async def test_import_answers_like_0_7_1_and_never_doubles(stack: Stack, tmp_path: Path) -> None:
    ref = Reference(tmp_path / "kryten-userstats.db")
    names = await ref.fill(seed=7)
    ingest, replica = stack.ingest(), stack.query()
    ingest.wait_healthy()
    replica.wait_healthy()
    nc = await connect(stack.nats.url)
    try:
        code, out = run_cli(stack, "import-sqlite", str(ref.path))
        assert code == 0, out
        assert "ingest has projected the import" in out
        assert "population_watermarks" in out and "derived" in out  # skipped, with the reason
        await caught_up(nc, replica)
        assert await compare(nc, ref, names) > 100
        await compare_case_twins(nc, ref)

        # The same file again: JetStream's dedupe window drops every event; nothing changes.
        last = await stream_last_seq(nc)
        code, out = run_cli(stack, "import-sqlite", str(ref.path))
        assert code == 0, out
        assert "0 journal event(s) appended" in out, out
        assert await stream_last_seq(nc) == last

        # 0.7.1 kept counting after the first import; importing its newer file replaces the
        # baselines (new event content, so new ids: the projection, not dedupe, prevents doubling).
        for _ in range(5):
            await ref.db.increment_message_count("user3", CHANNELS[0], DOMAIN)
        await ref.db.increment_kudos_phrase("Alice", CHANNELS[1], DOMAIN, "lol")
        code, out = run_cli(stack, "import-sqlite", str(ref.path))
        assert code == 0, out
        await caught_up(nc, replica)
        await compare(nc, ref, names)

        # Live events add on top of the imported history.
        before = await ours(nc, "user.stats", username="user3", domain=DOMAIN, channel=CHANNELS[0])
        held = (await nc.jetstream().stream_info(DEFAULT_STREAM)).state.messages
        for i in range(3):
            subject, data = chat("user3", CHANNELS[0], f"hello {i}")
            await nc.publish(subject, data)
        await nc.flush()
        await stored(nc, held + 3)  # a core publish is flushed before the stream stored it
        await caught_up(nc, replica)
        after = await ours(nc, "user.stats", username="user3", domain=DOMAIN, channel=CHANNELS[0])
        assert after["messages"] == before["messages"] + 3

        # The history is in the log: a rebuild from seq 1 gives the same tables, row by row.
        items = await read_stream(nc)
        await caught_up(nc, ingest)
        assert ingest.stop() == 0
        assert dump_file(stack.db_path) == dump_con(rebuild(items))
    finally:
        await nc.drain()


async def test_dry_run_reports_and_publishes_nothing(stack: Stack, tmp_path: Path) -> None:
    ref = Reference(tmp_path / "kryten-userstats.db")
    await ref.fill(seed=3, users=10)
    with sqlite3.connect(ref.path) as con:  # rows 0.7.1 could hold but we cannot use
        con.execute(
            "INSERT INTO message_counts (username, channel, domain, message_count) VALUES ('', 'x', 'y', 4)"
        )
        con.execute(
            "INSERT INTO users (username, first_seen_at, last_seen_at) VALUES ('zed', 'yesterday', 'now')"
        )
        users = con.execute("SELECT count(*) FROM users").fetchone()[0]
    nc = await connect(stack.nats.url)
    try:
        before = await nc.jetstream().account_info()
        code, out = run_cli(stack, "import-sqlite", "--dry-run", str(ref.path))
        assert code == 0, out
        assert "would import" in out
        assert "1 skipped: empty username" in out
        assert "1 skipped: unreadable timestamp" in out
        row = next(line for line in out.splitlines() if line.strip().startswith("users "))
        assert row.split()[1:] == [f"{users:,}", f"{users - 1:,}", "1"]
        assert "trigger phrases in the file: gg, lol" in out
        after = await nc.jetstream().account_info()
        assert after.streams == before.streams  # not even the stream was created
    finally:
        await nc.drain()


async def test_refuses_what_is_not_a_kryten_userstats_database(stack: Stack, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE users (id INTEGER, name TEXT)")
    wrong = tmp_path / "wrong.db"
    with sqlite3.connect(wrong) as con:
        con.execute("CREATE TABLE users (username TEXT, first_seen_at TEXT, last_seen_at TEXT)")
        con.execute("CREATE TABLE message_counts (username TEXT, channel TEXT, domain TEXT)")
    cases = {
        tmp_path / "absent.db": "no such file",
        junk: "is not an SQLite database",
        other: "is not a kryten-userstats database: it has no message_counts table",
        wrong: "table message_counts lacks column(s) message_count",
    }
    for path, why in cases.items():
        code, out = run_cli(stack, "import-sqlite", str(path))
        assert code == 2, out
        assert why in out, out
        assert "Traceback" not in out


def sh(*cmd: str) -> bool:
    return subprocess.run(list(cmd), check=False, capture_output=True).returncode == 0


async def test_odd_paths_and_a_read_only_location(stack: Stack, tmp_path: Path) -> None:
    """0.7.1 keeps its file in WAL mode: read-only, SQLite wants to create a -shm file, so a
    file on a read-only mount (a `:ro` volume) is opened as immutable when no log is pending,
    and refused with advice when one is. Names with URI characters must work too."""
    odd = tmp_path / "odd ?#% dir"
    odd.mkdir()
    ref = Reference(odd / "user?stats#1.db")
    await ref.fill(seed=5, users=5)
    with sqlite3.connect(ref.path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    code, out = run_cli(stack, "import-sqlite", "--dry-run", str(ref.path))
    assert code == 0 and "would import" in out, out
    pending = tmp_path / "pending"  # a copy taken while 0.7.1 had changes only in its log
    pending.mkdir()
    with_log(ref.path, pending / "k.db")
    code, out = run_cli(stack, "import-sqlite", "--dry-run", str(pending / "k.db"))
    assert (
        code == 0
        and users_read(out) == users_read(run_cli(stack, "import-sqlite", "--dry-run", str(ref.path))[1]) + 1
    )
    (pending / "k.db-shm").unlink(missing_ok=True)  # that read left one; with it, read-only works
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    for source, works in ((odd, True), (pending, False)):
        mnt = tmp_path / f"ro-{source.name}"
        mnt.mkdir()
        if not sh("mount", "--bind", str(source), str(mnt)):
            pytest.skip("cannot bind-mount here")
        try:
            assert sh("mount", "-o", "remount,ro,bind", str(mnt))
            name = ref.path.name if source is odd else "k.db"
            code, out = run_cli(stack, "import-sqlite", "--dry-run", str(mnt / name))
            if works:
                assert code == 0 and "would import" in out, out
            else:
                assert code == 2 and "write-ahead log" in out and "Traceback" not in out, out
        finally:
            sh("umount", "-l", str(mnt))


def with_log(src: Path, dest: Path) -> None:
    """Copy a WAL-mode database with one committed change still only in its -wal file."""
    work = dest.with_name("work.db")
    shutil.copy(src, work)
    con = sqlite3.connect(work)
    try:
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute(
            "INSERT INTO users (username, first_seen_at, last_seen_at) "
            "VALUES ('only_in_the_log', '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00')"
        )
        con.commit()
        shutil.copy(work, dest)
        shutil.copy(f"{work}-wal", f"{dest}-wal")
    finally:
        con.close()
    work.unlink()


def users_read(out: str) -> int:
    row = next(line for line in out.splitlines() if line.strip().startswith("users "))
    return int(row.split()[1].replace(",", ""))
