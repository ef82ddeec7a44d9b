"""Issue 3 end to end: identical tables in every mode, start-up KV state, ticks."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from userstats.query.replica import Replica
from userstats.query.tables import Committed
from userstats.shared import events as ev
from userstats.shared.subjects import DEFAULT_STREAM
from userstats.sim.generator import Simulator

from testbed.harness import (
    Service,
    Stack,
    caught_up,
    connect,
    envelope,
    free_port,
    publish_all,
    request,
    wait_for,
)
from tests.integration.streamtools import dump, dump_file, read_stream, rebuild


async def test_live_resumed_rebuilt_and_replica_tables_are_identical(stack: Stack) -> None:
    """Ingest (with a restart), a rebuild from seq 1, and a replica that loaded a mid-way
    snapshot and followed the stream: the same rows in every table."""
    ingest = stack.ingest()
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    stop = asyncio.Event()
    replica = Replica(nc.jetstream(), DEFAULT_STREAM, str(stack.tmp / "inproc-replica"), threads=1)
    follower: asyncio.Task[None] | None = None
    try:
        first = await publish_all(nc, Simulator(seed=21, step_us=50_000).events(30_000))
        await caught_up(nc, ingest)
        ingest.stop()  # a graceful restart in the middle of the log; it leaves a snapshot at `first`
        ingest = stack.ingest()
        ingest.wait_healthy()
        follower = asyncio.create_task(replica.run(stop))
        last = await publish_all(
            nc, Simulator(seed=22, step_us=50_000, start_us=1_765_000_000_000_000).events(30_000)
        )
        await caught_up(nc, ingest)
        await wait_for(lambda: replica.applied_seq >= last, timeout=60, what="replica to follow")
        assert replica.pointer is not None and first <= replica.pointer.seq < last  # it really followed

        def replica_dump(view: Committed) -> dict[str, list[tuple[Any, ...]]]:
            return dump(view.con)  # what a read sees: one committed sequence

        followed = await replica.read(replica_dump, need_seq=last)
        ingest.stop()
        live = dump_file(stack.db_path)
        rebuilt = dump(rebuild(await read_stream(nc)))
        assert live == rebuilt
        assert followed == rebuilt
        assert sum(len(rows) for rows in rebuilt.values()) > 1000
    finally:
        stop.set()
        if follower is not None:
            await follower
        await replica.close()
        await nc.close()


async def test_bridge_kv_state_is_read_at_start_and_projected(stack: Stack) -> None:
    nc = await connect(stack.nats.url)
    js = nc.jetstream()
    try:
        users = await js.create_key_value(bucket="kryten_420Grindhouse_userlist")
        await users.put(
            "users",
            json.dumps(
                [
                    {"name": "NightOwl", "rank": 2, "meta": {"afk": False}},
                    {"name": "ReelTalk", "rank": 1, "meta": {"afk": True}},
                ]
            ).encode(),
        )
        emotes = await js.create_key_value(bucket="kryten_420Grindhouse_emotes")
        await emotes.put("list", json.dumps([{"name": "#Kappa", "image": ""}]).encode())
        playlist = await js.create_key_value(bucket="kryten_420Grindhouse_playlist")
        await playlist.put(
            "current",
            json.dumps(
                {"id": "abc", "title": "Night_of_the_Living_Dead.1968.mkv", "type": "fi", "seconds": 5760}
            ).encode(),
        )
        ingest = stack.ingest(USERSTATS_CHANNELS="cytu.be/420Grindhouse")
        ingest.wait_healthy()
        query = stack.query(USERSTATS_CHANNELS="cytu.be/420Grindhouse")
        query.wait_healthy()
        # a chat after start-up uses the KV emotes and votes on the KV current media
        await publish_all(
            nc,
            [
                envelope(
                    "chatMsg",
                    {"username": "NightOwl", "msg": "#kappa great movie++", "time": 1},
                    channel="420Grindhouse",
                    domain="cytu.be",
                    time_us=ev.to_us(ev.EPOCH) + 1_800_000_000_000_000,
                )
            ],
        )
        await caught_up(nc, query)
        stats = (await request(nc, {"command": "system.stats"}))["data"]
        assert stats["active_sessions"] == 2 and stats["total_users"] == 2 and stats["total_emotes"] == 1
        votes = (await request(nc, {"command": "channel.movie_votes", "channel": "420grindhouse"}))["data"]
        assert [(v["media_title"], v["upvotes"], v["media_id"]) for v in votes] == [
            ("Night of the Living Dead 1968", 1, "abc")
        ]
        last = await js.get_last_msg(DEFAULT_STREAM, "userstats.journal.kvstate")
        event = ev.JOURNAL_DECODER.decode(last.data or b"")
        assert isinstance(event, ev.KvState) and event.channel == "420Grindhouse"
    finally:
        await nc.close()


async def test_ticks_record_population_of_quiet_channels(stack: Stack) -> None:
    nc = await connect(stack.nats.url)
    try:
        ingest = stack.ingest(USERSTATS_TICK_INTERVAL="0.2")
        ingest.wait_healthy()
        query = stack.query()
        now = int(time.time() * 1_000_000) - 900 * 1_000_000  # 15 minutes ago: ticks must fill 3 rows
        join = envelope("addUser", {"name": "solo"}, channel="Quiet", domain="cytu.be", time_us=now)
        await publish_all(nc, [join])
        query.wait_healthy()

        async def rows() -> list[dict[str, Any]]:
            reply = await request(nc, {"command": "channel.population", "channel": "quiet", "hours": 1})
            return list(reply["data"]["history"])

        history = await wait_for(rows, timeout=20, what="population rows from ticks")
        assert len(history) >= 2
        assert all(r["connected_count"] == 1 and r["chat_count"] == 1 for r in history)
    finally:
        await nc.close()


async def test_replica_creates_a_missing_replica_dir(stack: Stack) -> None:
    stack.ingest().wait_healthy()
    nested = stack.tmp / "not" / "there" / "yet"
    port = free_port()
    query = Service(
        "query",
        stack.env(USERSTATS_METRICS_PORT=str(port), USERSTATS_REPLICA_DIR=str(nested)),
        stack.tmp,
        port,
    )
    stack.services.append(query)
    query.start().wait_healthy()
    assert nested.is_dir()
    blocked = stack.tmp / "a-file"
    blocked.write_text("")
    port = free_port()
    bad = Service(
        "query",
        stack.env(USERSTATS_METRICS_PORT=str(port), USERSTATS_REPLICA_DIR=str(blocked / "x")),
        stack.tmp,
        port,
    )
    bad.start()
    assert bad.proc is not None and bad.proc.wait(30) == 1
    assert f"userstats.replica_dir: cannot create {blocked / 'x'}" in bad.log.read_text()
