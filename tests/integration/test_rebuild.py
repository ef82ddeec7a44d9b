"""Issue 5: rebuild from the stream into a shadow file, swap, zero query downtime, version bumps."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
from nats.aio.client import Client
from userstats.ingest.metrics import IngestMetrics
from userstats.ingest.rebuild import RebuildError
from userstats.ingest.rebuild_shadow import build_shadow
from userstats.ingest.snapshotter import Snapshotter
from userstats.shared import schema, snapshots
from userstats.shared.projection import is_captured
from userstats.shared.settings import NatsSettings
from userstats.shared.subjects import DEFAULT_STREAM
from userstats.sim.generator import Simulator

from testbed.harness import Stack, caught_up, connect, metric, pms_deleted, publish_all, request, wait_for
from tests.integration.streamtools import dump, dump_file, read_stream, rebuild


def cli(stack: Stack, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "userstats.ingest", *args],
        env=stack.env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=stack.tmp,
    )


async def stream_first_seq(nc: Client) -> bool:
    info = await nc.jetstream().stream_info(DEFAULT_STREAM)
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
        last = await caught_up(nc, ingest)  # the captured events, the settings and the PMs' journal events
        assert ingest.stop() == 0
        before, old_generation = dump_file(stack.db_path), await generation(nc)
        code, out = finish(cli(stack, "rebuild"))
        assert code == 0, out
        assert f"rebuilt {last:,} events to seq {last}" in out and "snapshot" in out
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
    seen: list[int] = []  # as_of_seq of system.stats, in order

    async def keep_asking() -> None:
        users = [f"420GUser{i}" for i in range(30)]
        i = 0
        while not stop.is_set():
            i += 1
            reply = await request(nc, {"command": "user.stats", "username": users[i % 30]}, timeout=10)
            outcomes.append(bool(reply["success"]))
            stats = await request(nc, {"command": "system.stats"}, timeout=10)
            seen.append(int(stats["as_of_seq"]))
            await asyncio.sleep(0.002)

    try:
        await publish_all(nc, Simulator(seed=32).events(60_000))
        query.wait_healthy()
        await caught_up(nc, query)
        # ingest too (its PMs' journal events appended): the rebuild then ends at or behind
        # what ingest projected, so events_projected_total below counts every seq once (a
        # rebuild ahead of ingest would have projected some in its own process)
        await caught_up(nc, ingest)
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
        assert all(a <= b for a, b in itertools.pairwise(seen)), "answers went back in time"
        stats = (await request(nc, {"command": "system.stats", "min_seq": last}))["data"]
        # ingest's figures agree with each other after the swap (traffic has stopped)
        last = await caught_up(nc, ingest)  # with the journal events of the last PMs
        _, health = ingest.health()
        text = ingest.metrics()
        assert health["checkpoint_seq"] == last == metric(text, "userstats_ingest_checkpoint_seq")
        assert health["stream_last_seq"] == metric(text, "userstats_ingest_stream_last_seq") >= last
        assert health["lag_events"] == metric(text, "userstats_ingest_lag_events") == 0
        assert metric(text, "userstats_ingest_events_projected_total") == last  # each seq counted once
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
        # with a snapshot as a base it rebuilds (tests/integration/test_retention.py); without one
        obs = await nc.jetstream().object_store("userstats_snapshots")
        for info in await obs.list():
            await obs.delete(info.name)
        code, out = finish(cli(stack, "rebuild", USERSTATS_CONFIG=str(cfg)))
        assert code == 1
        assert "cannot be rebuilt from the log alone" in out and "starts at seq" in out
        assert "no snapshot in the Object Store reaches seq" in out
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
            assert data["rows"][0]["stream_time"].endswith("+00:00")  # UTC, and it says so
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
            if is_captured(subject):
                await js.publish(subject, data, headers={"Nats-Msg-Id": f"test-{i}", "X-Any": "x"})
        await publish_all(nc, events[15_050:])
        last = await caught_up(nc, ingest)
        await pms_deleted(nc, timeout=240)  # the shadow builds must read the same messages (900 PMs)
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
            result = await build_shadow(js, DEFAULT_STREAM, tmp_path / f"r{i}.duckdb", **kwargs)
            assert (result.reader, result.seq) == (reader, seq)
            want = expected if seq == last else dump(rebuild([it for it in items if it.seq <= seq]))
            assert dump_file(result.path) == want, (reader, kwargs)
    finally:
        await nc.close()


async def test_a_replica_never_goes_back_in_time(stack: Stack, tmp_path: Path) -> None:
    """A snapshot of a new generation behind the replica is caught up from the stream before
    the replica switches; an older snapshot of the tables it serves is ignored."""
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    nc = await connect(stack.nats.url)
    js = nc.jetstream()
    try:
        await publish_all(nc, Simulator(seed=38).events(6_000))
        query.wait_healthy()
        await caught_up(nc, ingest)  # the PMs' journal events too
        last = await caught_up(nc, query)
        before = await request(nc, {"command": "system.stats", "min_seq": last})
        ingest.stop()
        behind = await build_shadow(js, DEFAULT_STREAM, tmp_path / "behind.duckdb", to_seq=last // 2)
        con = duckdb.connect(str(behind.path))
        try:
            snapper = Snapshotter(js, con, tmp_path / "snaps", IngestMetrics())
            await snapper.publish()  # generation `behind`, at half the replica's sequence
            await wait_for(lambda: query.log.read_text().count(" loaded: seq") >= 2, timeout=20, what="load")
            after = await request(nc, {"command": "system.stats"})
            assert after["as_of_seq"] >= last and after["data"] == {
                **before["data"],
                "commands_processed": after["data"]["commands_processed"],
            }
            assert f"bringing the new tables from seq {last // 2} up to seq {last}" in query.log.read_text()
            await snapper.publish()  # the same generation again: fine, it is not older
            con.execute(f"UPDATE {schema.CHECKPOINT_TABLE} SET seq = 10")  # older, same tables
            await snapper.publish()
            await wait_for(
                lambda: "older than the tables served" in query.log.read_text(), timeout=20, what="refusal"
            )
            again = await request(nc, {"command": "system.stats"})
            assert (
                again["as_of_seq"] >= last
                and again["data"]["total_messages"] == before["data"]["total_messages"]
            )
        finally:
            con.close()
    finally:
        await nc.close()


async def test_rebuild_output_never_replaces_the_live_database(stack: Stack, tmp_path: Path) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    try:
        last = await publish_all(nc, Simulator(seed=39).events(3_000))
        await caught_up(nc, ingest)
        live = stack.db_path
        inode = live.stat().st_ino
        link = tmp_path / "innocent.duckdb"
        link.symlink_to(live)
        for target in (live, link, Path(f"{live}.rebuild"), Path(f"{live}.wal")):
            code, out = finish(cli(stack, "rebuild", "--to-seq", "100", "--output", str(target)))
            assert code == 1 and "is the live database" in out, out
            assert "Traceback" not in out
        assert live.stat().st_ino == inode and ingest.health()[0] == 200
        dest = tmp_path / "at-100.duckdb"
        code, out = finish(cli(stack, "rebuild", "--to-seq", "100", "--output", str(dest)))
        assert code == 0 and "tables as of seq 100 written to" in out, out
        code, out = finish(cli(stack, "rebuild", "--to-seq", "100", "--output", str(dest)))
        assert code == 1 and "already exists; pass --force" in out, out
        code, out = finish(cli(stack, "rebuild", "--to-seq", "200", "--output", str(dest), "--force"))
        assert code == 0 and "as of seq 200" in out, out
        # the live tables are the ones ingest keeps writing
        await publish_all(nc, Simulator(seed=40, start_us=1_765_000_000_000_000).events(100))
        after = await caught_up(nc, ingest)
        assert after > last and live.stat().st_ino == inode
        assert ingest.health()[1]["checkpoint_seq"] == after
        # and if something else moves the file away, /health says so instead of "healthy"
        live.rename(tmp_path / "moved.duckdb")
        code, body = ingest.health()
        assert code == 503 and "was replaced or removed while open" in body["status"], body
        (tmp_path / "moved.duckdb").rename(live)
        assert ingest.health()[0] == 200
    finally:
        await nc.close()


async def test_rebuild_from_another_directory_finds_the_database(stack: Stack, tmp_path: Path) -> None:
    """database.path is relative to where ingest runs: the command asks the running ingest
    where it is, and without one it refuses at once, naming the path it looked at."""
    relative = {"USERSTATS_DB_PATH": "ingest/userstats.duckdb"}
    ingest = stack.ingest(**relative)  # runs in stack.tmp
    ingest.wait_healthy()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    nc = await connect(stack.nats.url)

    def rebuild_from_elsewhere() -> tuple[int, str]:
        proc = subprocess.run(
            [sys.executable, "-m", "userstats.ingest", "rebuild"],
            env=stack.env(**relative),
            capture_output=True,
            text=True,
            cwd=elsewhere,
            timeout=120,
            check=False,
        )
        return proc.returncode, proc.stdout + proc.stderr

    try:
        await publish_all(nc, Simulator(seed=41).events(2_000))
        await caught_up(nc, ingest)
        code, out = rebuild_from_elsewhere()
        assert code == 0 and "swapped into the running ingest" in out, out
        ingest.stop()
        code, out = rebuild_from_elsewhere()
        assert code == 1 and f"no database at {elsewhere / 'ingest' / 'userstats.duckdb'}" in out, out
        assert not (elsewhere / "ingest").exists()
    finally:
        await nc.close()


async def test_a_failing_rebuild_worker_ends_the_rebuild_with_its_error(stack: Stack, tmp_path: Path) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, Simulator(seed=42).events(80_000))  # more batches than the queue holds
        await caught_up(nc, ingest)
        dest = tmp_path / "no-such-dir" / "r.duckdb"
        settings = NatsSettings(servers=[stack.nats.url])
        with pytest.raises(RebuildError, match=r"the rebuild failed writing .*Cannot open"):
            await asyncio.wait_for(build_shadow(nc.jetstream(), DEFAULT_STREAM, dest, nats=settings), 60)
    finally:
        await nc.close()
