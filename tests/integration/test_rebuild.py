"""Issue 5: rebuild from the stream into a shadow file, swap, zero query downtime, version bumps."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
from nats.aio.client import Client

from ingest.rebuild import build_shadow
from shared import schema, snapshots
from shared.settings import NatsSettings
from sim.generator import Simulator
from tests.harness import Stack, connect, publish_all, request, wait_for
from tests.integration.streamtools import dump, dump_file, read_stream, rebuild
from tests.integration.test_backbone import caught_up


def cli(stack: Stack, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", *args],
        env=stack.env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=stack.tmp,
    )


async def stream_first_seq(nc: Client) -> bool:
    info = await nc.jetstream().stream_info("USERSTATS")
    return int(info.state.first_seq) > 1


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


async def generation(nc: Client) -> str:
    pointer = await snapshots.read_pointer(nc.jetstream())
    assert pointer is not None
    return pointer.generation


async def test_rebuild_without_ingest_gives_the_same_tables(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, Simulator(seed=31).events(20_000))
        await caught_up(nc, ingest)
        assert ingest.stop() == 0
        before, old_generation = dump_file(stack.db_path), await generation(nc)
        code, out = finish(cli(stack, "rebuild"))
        assert code == 0, out
        assert "rebuilt 20,001 events to seq 20001" in out and "snapshot" in out
        assert dump_file(stack.db_path) == before
        assert await generation(nc) != old_generation  # replicas will load the rebuilt tables
        assert not Path(f"{stack.db_path}.rebuild").exists()
    finally:
        await nc.close()


async def test_rebuild_while_serving_has_zero_failed_queries(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    nc = await connect(stack.nats.url)
    stop = asyncio.Event()
    outcomes: list[bool] = []

    async def keep_asking() -> None:
        users = [f"420GUser{i}" for i in range(30)]
        i = 0
        while not stop.is_set():
            i += 1
            reply = await request(nc, {"command": "user.stats", "username": users[i % 30]}, timeout=10)
            outcomes.append(bool(reply["success"]))
            await asyncio.sleep(0.002)

    try:
        await publish_all(nc, Simulator(seed=32).events(60_000))
        query.wait_healthy()
        await caught_up(nc, query)
        old_generation = await generation(nc)
        asker = asyncio.create_task(keep_asking())
        proc = cli(stack, "rebuild")
        # live traffic keeps arriving during the rebuild
        last = await publish_all(nc, Simulator(seed=33, start_us=1_765_000_000_000_000).events(5_000))
        code, out = await asyncio.to_thread(finish, proc)
        assert code == 0, out
        assert "swapped into the running ingest" in out
        await wait_for(
            lambda: query.log.read_text().count(" loaded: seq") >= 2, timeout=30, what="replica reload"
        )
        new_generation = await generation(nc)
        assert new_generation != old_generation
        await caught_up(nc, query)
        stop.set()
        await asker
        assert len(outcomes) > 50 and all(outcomes), f"{outcomes.count(False)} failed of {len(outcomes)}"
        stats = (await request(nc, {"command": "system.stats", "min_seq": last}))["data"]
        ingest.stop()
        live = dump_file(stack.db_path)
        assert live == dump(rebuild(await read_stream(nc)))
        assert stats["total_messages"] == sum(r[6] for r in live["counters"] if r[0] == "message")
    finally:
        stop.set()
        await nc.close()


async def test_projection_version_mismatch_triggers_a_rebuild(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, Simulator(seed=34).events(10_000))
        await caught_up(nc, ingest)
        ingest.stop()
        expected = dump_file(stack.db_path)
        con = duckdb.connect(str(stack.db_path))
        con.execute(f"UPDATE {schema.CHECKPOINT_TABLE} SET projection_version = 0")
        con.execute("DELETE FROM counters")  # what an old projection would have got wrong
        con.close()
        ingest = stack.ingest()
        ingest.wait_healthy(timeout=60)
        await caught_up(nc, ingest)
        assert "rebuilding from the stream" in ingest.log.read_text()
        ingest.stop()
        assert dump_file(stack.db_path) == expected
    finally:
        await nc.close()


async def test_kill_9_during_a_rebuild_leaves_the_live_system_serving(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, Simulator(seed=35).events(150_000))
        query.wait_healthy()
        await caught_up(nc, query)
        before = (await request(nc, {"command": "system.stats"}))["data"]["total_messages"]
        proc = cli(stack, "rebuild")
        shadow = Path(f"{stack.db_path}.rebuild")
        await wait_for(
            lambda: shadow.exists() and shadow.stat().st_size > 1_000_000,
            timeout=60,
            interval=0.02,
            what="the rebuild to be under way",
        )
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        assert ingest.health()[0] == 200 and query.health()[0] == 200
        last = await publish_all(nc, Simulator(seed=36, start_us=1_765_000_000_000_000).events(1_000))
        after = await request(nc, {"command": "system.stats", "min_seq": last})
        assert after["success"] and after["data"]["total_messages"] > before
        code, out = finish(cli(stack, "rebuild"))  # the retry removes the partial shadow and succeeds
        assert code == 0, out
        assert not shadow.exists()
    finally:
        await nc.close()


async def test_rebuild_refuses_a_stream_that_lost_its_beginning(stack: Stack, tmp_path: Path) -> None:
    cfg = tmp_path / "limited.json"
    cfg.write_text(json.dumps({"userstats": {"stream_max_msgs": 1000}}))
    ingest = stack.ingest(USERSTATS_CONFIG=str(cfg))
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, Simulator(seed=37).events(1_500), wait=False)
        await wait_for(lambda: stream_first_seq(nc), timeout=20, what="the limit to drop old messages")
        ingest.stop()
        code, out = finish(cli(stack, "rebuild", USERSTATS_CONFIG=str(cfg)))
        assert code == 1
        assert "cannot be rebuilt from the log alone" in out and "starts at seq" in out
    finally:
        await nc.close()


async def test_dead_letters_listing_with_and_without_ingest(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, [("kryten.events.cytube.x.chatmsg", b"not json at all")])
        await caught_up(nc, ingest)
        for running in (True, False):
            if not running:
                ingest.stop()
            code, out = finish(cli(stack, "dead-letters"))
            assert code == 0, out
            data: dict[str, Any] = json.loads(out[out.index("{") :])
            assert data["total"] == 1 and data["rows"][0]["raw"] == "not json at all"
            assert data["rows"][0]["subject"] == "kryten.events.cytube.x.chatmsg"
    finally:
        await nc.close()


async def test_fast_reader_nats_py_reader_and_bounded_batches_build_the_same_tables(
    stack: Stack, tmp_path: Path
) -> None:
    """The rebuild's hand-written protocol reader against the library's, with messages that
    carry headers (HMSG) among plain ones, a point-in-time target, and intermediate writes."""
    ingest = stack.ingest()
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    js = nc.jetstream()
    try:
        events = list(Simulator(seed=37).events(30_000))
        await publish_all(nc, events[:15_000])
        for i, (subject, data) in enumerate(events[15_000:15_050]):  # stored with headers
            await js.publish(subject, data, headers={"Nats-Msg-Id": f"test-{i}", "X-Any": "x"})
        last = await publish_all(nc, events[15_050:])
        await caught_up(nc, ingest)
        items = await read_stream(nc)
        expected = dump(rebuild(items))
        settings = NatsSettings(servers=[stack.nats.url])
        cases: list[tuple[str, dict[str, Any], int]] = [
            ("fast", {"nats": settings}, last),
            ("nats-py", {}, last),
            ("fast", {"nats": settings, "max_pending_rows": 500}, last),
            ("fast", {"nats": settings, "to_seq": 15_020}, 15_020),
        ]
        for i, (reader, kwargs, seq) in enumerate(cases):
            result = await build_shadow(js, "USERSTATS", tmp_path / f"r{i}.duckdb", **kwargs)
            assert (result.reader, result.seq) == (reader, seq)
            want = expected if seq == last else dump(rebuild(items[:seq]))
            assert dump_file(result.path) == want, (reader, kwargs)
    finally:
        await nc.close()
