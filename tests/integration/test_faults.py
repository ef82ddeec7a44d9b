"""Issue 8, faults: the NATS server restarts during load; both services reconnect by themselves
and the totals stay exact."""

from __future__ import annotations

import asyncio

from sim.generator import Simulator
from tests.harness import Stack, connect, publish_all, request, wait_for
from tests.integration.streamtools import Oracle, dump, dump_file, read_stream, rebuild
from tests.integration.test_backbone import caught_up


async def test_nats_restart_during_load(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    first = list(Simulator(seed=51).events(100_000))
    second = list(Simulator(seed=52, start_us=1_765_000_000_000_000).events(20_000))
    nc = await connect(stack.nats.url)
    try:
        stored = await publish_all(nc, first)
        # restart the server (same port, same store) while ingest is still projecting
        assert (ingest.health()[1]["checkpoint_seq"] or 0) < stored
        await nc.close()
        stack.nats.stop()
        await asyncio.sleep(1)
        stack.nats.start()
        nc = await connect(stack.nats.url)
        last = await publish_all(nc, second)
        query.wait_healthy()
        await wait_for(lambda: ingest.health()[0] == 200, timeout=30, what="ingest to reconnect")
        await caught_up(nc, ingest)
        await caught_up(nc, query)
        stats = (await request(nc, {"command": "system.stats", "min_seq": last}))["data"]
        assert stats["total_messages"] == Oracle(first + second).total_messages
        ingest.stop()
        assert dump_file(stack.db_path) == dump(rebuild(await read_stream(nc)))
    finally:
        await nc.close()


async def test_kill_9_of_one_replica_under_load_fails_only_its_in_flight_requests(stack: Stack) -> None:
    stack.ingest().wait_healthy()
    doomed, survivor = stack.query(), stack.query()
    nc = await connect(stack.nats.url)
    results: list[tuple[float, bool]] = []
    stop = asyncio.Event()

    async def ask(k: int) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                reply = await request(nc, {"command": "user.stats", "username": f"420GUser{k}"}, timeout=2)
                results.append((loop.time(), bool(reply["success"])))
            except Exception:  # a timeout: the request was in flight on the killed replica
                results.append((loop.time(), False))

    try:
        last = await publish_all(nc, Simulator(seed=53).events(5_000))
        for r in (doomed, survivor):
            r.wait_healthy()
        await caught_up(nc, survivor)
        await request(nc, {"command": "system.stats", "min_seq": last})
        askers = [asyncio.create_task(ask(k)) for k in range(4)]
        await asyncio.sleep(1.0)
        killed_at = asyncio.get_running_loop().time()
        doomed.kill9()
        await asyncio.sleep(4.0)
        stop.set()
        await asyncio.gather(*askers)
        failures = [t for t, ok in results if not ok]
        assert len(results) > 200
        assert len(failures) <= 4  # at most the requests in flight on the killed replica
        assert all(t < killed_at + 2.5 for t in failures)  # nothing failed after those timed out
        assert sum(1 for t, ok in results if ok and t > killed_at + 2.5) > 50  # the survivor serves on
        assert survivor.health()[0] == 200
    finally:
        stop.set()
        await nc.close()
