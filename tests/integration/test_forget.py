"""Issue 20, item 4: user.forget, live, on replicas, after a rebuild; the name is gone everywhere
(replies, tables, snapshots, the stream) and the other users' counts are unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
from nats.aio.client import Client
from userstats.shared import forget, snapshots, subjects

from testbed.harness import Stack, caught_up, connect, publish_all, request, wait_for
from tests.integration.streamtools import dump_file, read_stream
from tests.integration.test_rebuild import cli, finish
from tests.projection_helpers import Log

G = "420Grindhouse"
NAME = "Zq9Forgettable"  # a name no other string in the log contains
ALIAS = "zqalias"
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
OTHERS = ("NightOwl", "ReelTalk")


def before_log() -> Log:
    log = Log(BASE).at(0).emotes(["Kappa"]).media("Movie.One.mkv", "m1")
    log.at(1).join(NAME).join("NightOwl").join("ReelTalk")
    log.at(2).chat(NAME, "hello Kappa").chat("NightOwl", "ReelTalk++ nice").chat(NAME, "movie++")
    log.at(3).chat(NAME, "hi again", channel="Other").afk(NAME, True)
    log.at(4).event("pm", {"username": NAME, "msg": "psst", "to": "KrytenBot"})
    log.at(5).chat("ReelTalk", "NightOwl++ Kappa")
    return log


def after_log() -> Log:  # the user comes back after being forgotten; nobody mentions the name
    log = Log(BASE).at(100).chat(NAME, "I am back").join(NAME, channel="Other").afk(NAME, False)
    log.at(101).chat(NAME, "still me", channel="Other").chat("NightOwl", "quiet today")
    return log


COMMANDS: list[dict[str, Any]] = [
    {"command": "system.stats"},
    {"command": "alias.list"},
    {"command": "alias.find", "alias": ALIAS},
    {"command": "channel.top_users", "channel": G},
    {"command": "channel.all_stats", "channel": G},
    {"command": "leaderboard.messages"},
    {"command": "leaderboard.kudos"},
    {"command": "leaderboard.emotes"},
    {"command": "leaderboard.all"},
    {"command": "channel.movie_votes", "channel": G},
]


async def replies_mention(nc: Client, min_seq: int) -> list[str]:
    found = []
    for body in COMMANDS:
        reply = await request(nc, {**body, "min_seq": min_seq})
        assert reply["success"], reply
        text = json.dumps(reply).lower()
        if body["command"] == "alias.find":  # the reply repeats the alias asked about
            text = text.replace(f'"alias": "{ALIAS}"', "") if not reply["data"]["found"] else ALIAS
        if NAME.lower() in text or ALIAS in text:
            found.append(body["command"])
    stats = await request(nc, {"command": "user.stats", "username": NAME.lower(), "min_seq": min_seq})
    d = stats["data"]
    if d["first_seen"] is not None or d["all_messages"] or d["pms"] or d["aliases"] or d["emotes"]:
        found.append("user.stats")
    return found


async def others(nc: Client, min_seq: int) -> dict[str, Any]:
    out = {}
    for user in OTHERS:
        reply = await request(nc, {"command": "user.stats", "username": user, "min_seq": min_seq})
        out[user] = reply["data"]
    return out


def tables_mention(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables with a text value (any column, case-insensitive) containing the name."""
    hits = []
    cols = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE data_type IN ('VARCHAR', 'BLOB') "
        "AND database_name = current_database()"
    ).fetchall()
    for table, column in cols:
        n = con.execute(
            f'SELECT count(*) FROM "{table}" WHERE contains(lower(CAST("{column}" AS VARCHAR)), ?)',
            [NAME.lower()],
        ).fetchone()
        if n and n[0]:
            hits.append(f"{table}.{column}")
    return hits


async def stream_mentions(nc: Client) -> list[int]:
    return [it.seq for it in await read_stream(nc) if NAME.lower().encode() in it.data.lower()]


async def stream_clean(nc: Client) -> bool:
    return not await stream_mentions(nc)


async def snapshot_mentions(nc: Client, tmp: Path) -> list[str]:
    js = nc.jetstream()
    obs = await js.object_store(subjects.SNAPSHOT_BUCKET)
    hits = []
    for info in await obs.list():
        if info.deleted:
            continue
        path = tmp / f"{info.name}.duckdb"
        pointer = snapshots.SnapshotPointer(
            0, info.name, 0, "", int(info.size or 0), snapshots.digest_hex(info.digest) or "", ""
        )
        try:
            await snapshots.download(js, pointer, path, timeout=10)
        except snapshots.SnapshotError:  # pruned since the listing (one every 0.3 s here)
            path.unlink(missing_ok=True)
            continue
        con = duckdb.connect(str(path), read_only=True)
        try:
            hits += [f"{info.name}: {t}" for t in tables_mention(con)]
        finally:
            con.close()
        path.unlink()
    return hits


async def test_forget_live_on_replicas_and_after_a_rebuild(stack: Stack, tmp_path: Path) -> None:
    ingest = stack.ingest(USERSTATS_CHANNELS=f"cytu.be/{G}")
    ingest.wait_healthy()
    query = stack.query(USERSTATS_CHANNELS=f"cytu.be/{G}")
    second = stack.query(USERSTATS_CHANNELS=f"cytu.be/{G}")  # a replica the forget may not reach through
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, [(s, d) for s, d, _ in before_log().messages])
        query.wait_healthy()
        second.wait_healthy()
        await caught_up(nc, query)
        await caught_up(nc, second)
        added = await request(nc, {"command": "alias.add", "username": NAME, "alias": ALIAS})
        assert added["data"]["added"], added
        kudos = Log(BASE).at(6).chat("ReelTalk", f"{ALIAS}++ thanks")  # resolves through the alias
        await publish_all(nc, [(s, d) for s, d, _ in kudos.messages])
        seq = await caught_up(nc, query)
        assert await replies_mention(nc, seq)  # the user is there before
        kept = await others(nc, seq)
        await wait_for(lambda: snapshot_mentions(nc, tmp_path), what="a snapshot with the user")

        before = {it.seq for it in await read_stream(nc)}
        # A plain channel.all_stats (no min_seq) may answer from the cache, refreshed behind it.
        # Cached on both replicas, with the user:
        plain = f"/api/v1/channel.all_stats?channel={G}"
        http = httpx.AsyncClient(timeout=10)
        for r in (query, second):
            assert NAME.lower() in (await http.get(f"http://127.0.0.1:{r.port}{plain}")).text.lower()
        reply = await request(nc, {"command": "user.forget", "username": NAME.upper()}, timeout=15)
        assert reply["success"] and reply["data"]["forgotten"] and reply["data"]["known"], reply
        assert reply["data"]["user_hash"] == forget.user_hash(NAME)
        forgotten_at = reply["as_of_seq"]
        # Once a replica has the forget, not even a plain read gives the reply from before it
        # (the replica that relayed the answer has it by then; the other once it follows).
        for r in (query, second):
            await wait_for(lambda r=r: r.health()[1]["as_of_seq"] >= forgotten_at, what="the forget")
            right_after = (await http.get(f"http://127.0.0.1:{r.port}{plain}")).json()
            assert right_after["as_of_seq"] >= forgotten_at, right_after
            assert NAME.lower() not in json.dumps(right_after).lower(), right_after
        await http.aclose()
        second.stop()
        assert await replies_mention(nc, forgotten_at) == []
        assert await others(nc, forgotten_at) == kept

        # live: the user's raw events go from the stream; nothing else does
        await wait_for(lambda: stream_clean(nc), timeout=30, what="the user's events deleted")
        after = {it.seq for it in await read_stream(nc)}
        removed = before - after
        assert len(removed) == 7  # addUser, 3 chat lines, setAFK, pm, alias.add: the user's only
        assert all(s < forgotten_at for s in removed)

        # the user comes back: not counted, and those events are deleted too
        last = await publish_all(nc, [(s, d) for s, d, _ in after_log().messages])
        await caught_up(nc, query)
        assert await replies_mention(nc, last) == []
        kept["NightOwl"] = (await others(nc, last))["NightOwl"]  # NightOwl spoke once more
        assert kept["NightOwl"]["all_messages"]
        await wait_for(lambda: stream_clean(nc), timeout=30, what="the later events deleted")
        ingest_log = ingest.log.read_text()  # from the forget on, not even in the log lines
        assert NAME.lower() not in ingest_log[ingest_log.index("user.forget: user") :].lower()

        # snapshots: the next one after the forget replaces every older one (README), so once
        # the pointer names a snapshot taken after it, none with the user remains
        async def after_forget() -> bool:
            pointer = await snapshots.read_pointer(nc.jetstream())
            return pointer is not None and pointer.seq >= forgotten_at

        await wait_for(after_forget, what="a snapshot taken after the forget")

        async def none_mention() -> bool:  # its prune follows its pointer within milliseconds
            return not await snapshot_mentions(nc, tmp_path)

        await wait_for(none_mention, timeout=10, what="the older snapshots pruned")

        # a new replica, from the snapshot, knows nothing of the user
        query.stop()
        fresh = stack.query(USERSTATS_CHANNELS=f"cytu.be/{G}")
        fresh.wait_healthy()
        await caught_up(nc, fresh)
        assert await replies_mention(nc, last) == []
        assert await others(nc, last) == kept

        # after a rebuild from what the stream still holds: the same for everyone else
        await caught_up(nc, ingest)
        ingest.stop()
        live = dump_file(stack.db_path)
        code, out = finish(cli(stack, "rebuild"))
        assert code == 0, out
        rebuilt = dump_file(stack.db_path)
        con = duckdb.connect(str(stack.db_path), read_only=True)
        try:
            assert tables_mention(con) == []
        finally:
            con.close()
        for table in ("users", "user_aliases", "movie_votes", "open_sessions", "forgotten_users"):
            assert rebuilt[table] == live[table], table
        per_user = [r for r in live["counters"] if r[1]]
        assert [r for r in rebuilt["counters"] if r[1]] == per_user
        await caught_up(nc, fresh)
        assert await replies_mention(nc, last) == []
        assert await others(nc, last) == kept
    finally:
        await nc.close()
