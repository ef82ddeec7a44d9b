"""Issue 21: userstats on a real three-node NATS cluster with R3 stores, losing nodes under load.

Three nats-server processes on loopback joined by cluster routes, each with its own store;
the stream, the pointer KV and the snapshot Object Store are R3. Ingest and two replicas
connect to different nodes (NATS_RANDOMIZE=false: the first listed node, then the others).
A bridge stand-in core-publishes 1,000 simulator events/s like kryten-robot.

What the bridge publishes while the stream has no leader is not stored: on a cluster only
the stream's leader subscribes to the captured subjects (nats-server stream.go,
setLeader -> subscribeToStream). After a kill -9 of the leader its peers wait for their
election timeout (raft.go: 4 to 9 s, random) before one campaigns, so that window is the
price of a node failure at the broker. The tests measure it and fail if an event is lost
outside it or if it grows past ELECTION_BOUND_S. A stepdown or a lame-duck shutdown hands
leadership over instead (a transfer campaign after 10 ms, then one vote round): measured
at 18 ms, and bounded by TRANSFER_BOUND_S.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from userstats.ingest import rawstream
from userstats.shared import snapshots
from userstats.shared.replication import Replication
from userstats.shared.settings import NatsSettings
from userstats.shared.subjects import DEFAULT_STREAM, STREAM_SUBJECTS
from userstats.sim.generator import Simulator

from testbed.harness import (
    NatsCluster,
    Service,
    Stack,
    pms_deleted,
    publish_all,
    request,
    settled,
    wait_for,
)
from tests.integration.clustertools import (
    FIGURES,
    STORES,
    Askers,
    Bridge,
    HealthLog,
    all_current,
    connect_to,
    leader,
    move_leader,
    order_from,
    spec_gauges,
    step_down,
)
from tests.integration.streamtools import Oracle, dump, dump_file, read_stream, rebuild, redacted_pms

RATE = 1000  # events/s, as in the observation
# maxElectionTimeout (9 s) + the longest campaign delay (0.8 s) + a vote round and the new
# leader's subscription reaching the bridge's server, with 2 s to spare for two busy cores.
ELECTION_BOUND_S = 12.0
# A handover: a 10 ms transfer campaign + a vote round + the new leader subscribing, 18 ms
# on an idle cluster; 17 to 155 ms measured here, with three servers, ingest, two replicas,
# the bridge and the requesters sharing two cores. 500 ms is about three times the worst.
TRANSFER_BOUND_S = 0.5


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    c = NatsCluster(tmp_path)
    c.start()
    yield c
    c.stop()


@pytest.fixture
def cstack(tmp_path: Path, cluster: NatsCluster) -> Iterator[Stack]:
    s = Stack(tmp_path, cluster)
    yield s
    s.stop_all()


def on(cluster: NatsCluster, node: int, **extra: str) -> dict[str, str]:
    """Environment for a service connected to node `node` (1-based), failing over to the others."""
    return {
        "NATS_URL": cluster.urls_from(cluster.nodes[node - 1]),
        "NATS_RANDOMIZE": "false",
        "USERSTATS_REPLICAS": "3",
        # the default, "projected"; USERSTATS_TEST_CLUSTER_CAPTURE=all runs them with every event
        "USERSTATS_STREAM_CAPTURE": os.environ.get("USERSTATS_TEST_CLUSTER_CAPTURE", "projected"),
        **extra,
    }


async def caught_up_to(svc: Service, seq: int, timeout: float = 60) -> None:
    def at() -> bool:
        code, body = svc.health()
        return code == 200 and (body.get("checkpoint_seq", body.get("as_of_seq")) or 0) >= seq

    await wait_for(at, timeout=timeout, what=f"{svc.module}:{svc.port} to reach seq {seq}")


async def stored_bridge_events(nc: Client) -> tuple[list[Any], set[bytes]]:
    items = await read_stream(nc)
    bridge = [it.data for it in items if it.subject.startswith("kryten.events.")]
    assert len(bridge) == len(set(bridge)), "an event was stored twice"
    journal = [it.data for it in items if it.subject.startswith("userstats.journal.")]
    assert len(journal) == len(set(journal)), "a retried journal append was stored twice"
    return items, set(bridge)


def degraded(svc: Service, needle: str) -> bool:
    code, body = svc.health()
    return code == 200 and str(body["status"]).startswith("degraded: ") and needle in body["status"]


class LeaderLog:
    """Who leads the stream, asked every 100 ms from a client on a node that stays up."""

    def __init__(self, nc: Client) -> None:
        self.js = nc.jetstream(timeout=0.5)
        self.seen: list[tuple[float, str | None]] = []
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                info = await self.js.stream_info(DEFAULT_STREAM)
                name = info.cluster.leader if info.cluster else None
            except Exception:
                name = None
            self.seen.append((t, name or None))
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        self._stop.set()
        await self._task

    def leaderless(self, after: float) -> float:
        """Seconds from `after` until a leader answered again."""
        gone = [t for t, name in self.seen if t >= after and name is None]
        if not gone:
            return 0.0
        back = [t for t, name in self.seen if t > gone[0] and name is not None]
        return (back[0] if back else self.seen[-1][0]) - after


@pytest.mark.parametrize("kills", [1, pytest.param(4, marks=pytest.mark.soak)])
async def test_kill_9_of_the_stream_leader_under_load(
    cluster: NatsCluster, cstack: Stack, kills: int
) -> None:
    await cluster.ready()
    # ticks every 0.5 s: journal appends (JetStream publishes with acks) go on through the kill
    ingest = cstack.ingest(**on(cluster, 1, USERSTATS_TICK_INTERVAL="0.5"))
    ingest.wait_healthy(timeout=60)
    nc = await connect_to(order_from(cluster, cluster.nodes[0]), "test")
    try:
        js = nc.jetstream()
        for name in STORES:
            assert (await js.stream_info(name)).config.num_replicas == 3, name
        await move_leader(nc, DEFAULT_STREAM, "n3")
        first = cluster.node("n3")
        replica_a = cstack.query(**on(cluster, 3))  # on the node that will be killed first
        replica_b = cstack.query(**on(cluster, 2))
        for r in (replica_a, replica_b):
            r.wait_healthy(timeout=60)
        assert replica_a.health()[1]["nats_server"] == f"127.0.0.1:{first.port}"
        assert replica_b.health()[1]["nats_server"] == f"127.0.0.1:{cluster.nodes[1].port}"
        assert ingest.health()[1]["nats_server"] == f"127.0.0.1:{cluster.nodes[0].port}"

        bridge = Bridge(order_from(cluster, cluster.nodes[0]), seed=211, rate=RATE, workdir=cstack.tmp)
        asker_nc = await connect_to(order_from(cluster, cluster.nodes[1]), "askers")
        askers = Askers(asker_nc)
        health = HealthLog({"ingest": ingest, "replica_a": replica_a, "replica_b": replica_b})
        leaders = LeaderLog(nc)
        bridge.start()
        askers.start()
        health.start()
        await asyncio.sleep(3)
        rounds: list[tuple[str, float, float, float]] = []  # (node, killed, restarted, caught up after s)
        for k in range(kills):
            doomed = first if k == 0 else cluster.node(await wait_for(lambda: leader_or_none(nc)))
            killed_at = time.monotonic()
            doomed.kill9()
            await wait_for(
                lambda killed_at=killed_at: any(n and t > killed_at for t, n in leaders.seen),
                timeout=20,
                what="a new leader",
            )
            for svc in (ingest, replica_b):  # served by two nodes of three, and saying so
                await wait_for(
                    lambda svc=svc: degraded(svc, "stream USERSTATS: 2 of 3 replicas current"),
                    timeout=15,
                    what=f"{svc.module} to report the stream degraded",
                )
            await asyncio.sleep(1)
            restarted_at = time.monotonic()
            doomed.start()
            await all_current(nc)
            rounds.append((cluster.name_of(doomed), killed_at, restarted_at, time.monotonic() - restarted_at))
            await asyncio.sleep(2)
        await bridge.stop()
        await askers.stop()
        await leaders.stop()
        last = int((await js.stream_info(DEFAULT_STREAM)).state.last_seq)
        for svc in (ingest, replica_a, replica_b):
            await caught_up_to(svc, last)
        await health.stop()
        await asker_nc.close()

        # Queries never stopped: only requests in flight on a killed node's replica failed.
        failures = askers.failures()
        assert len(askers.results) > 500
        assert len(failures) <= askers.n * kills, failures
        # in flight at a kill: sent at most one request timeout before it, or just after
        in_flight = [(k - askers.timeout, k + 1) for _, k, _, _ in rounds]
        assert all(any(a <= t < b for a, b in in_flight) for t in failures), [
            (
                round(t - rounds[0][1], 2),
                [(n, round(k - rounds[0][1], 2), round(r - rounds[0][1], 2)) for n, k, r, _ in rounds],
            )
            for t in failures
        ]
        assert askers.longest_gap() < 2.5

        # The replica that was on the killed node reconnected and answers like the other.
        code, body = replica_a.health()
        assert code == 200 and (kills > 1 or body["nats_server"] != f"127.0.0.1:{first.port}"), body
        await wait_for(
            lambda: spec_gauges(replica_a.metrics()) == spec_gauges(replica_b.metrics()),
            what="both replicas to report the same totals",
        )
        await wait_for(  # ingest appends a tick every 0.5 s: compare at a moment both have it
            lambda: replica_a.health()[1]["as_of_seq"] == replica_b.health()[1]["as_of_seq"] >= last,
            what="both replicas at the same seq",
        )

        # Health told the truth: 503 naming the stream while it had no leader.
        for _, killed_at, restarted_at, _ in rounds:
            for name in ("ingest", "replica_b"):
                assert [
                    s for s in health.unhealthy(name, killed_at, "stream USERSTATS") if s.t < restarted_at
                ], health.transitions(name, killed_at)
            assert health.metric_seen(
                "ingest",
                killed_at,
                'userstats_ingest_jetstream_store_up{name="USERSTATS",store="stream"} 0.0',
            )
        assert health.samples["ingest"][-1].code == 200

        assert ingest.stop() == 0  # no more ticks: the stream holds still from here on
        # The first node killed caught up: as the leader it holds what the others hold.
        before = (await js.stream_info(DEFAULT_STREAM)).state
        await move_leader(nc, DEFAULT_STREAM, "n3")
        after = (await js.stream_info(DEFAULT_STREAM)).state
        assert (after.messages, after.bytes, after.last_seq) == (
            before.messages,
            before.bytes,
            before.last_seq,
        )

        # Exactly once: the tables equal a rebuild from seq 1, and count each stored event once.
        items, stored = await stored_bridge_events(nc)
        tables = dump_file(cstack.db_path)
        assert dump(rebuild(items)) == tables
        oracle = Oracle([(bridge.subjects.get(d, ""), d) for d in stored])
        assert sum(r[-2] for r in tables["counters"] if r[0] == "message") == oracle.total_messages
        # Ticks went on through each election (retried, and stored once: see stored_bridge_events).
        ticks = [it for it in items if it.subject == "userstats.journal.tick"]
        for _, _, restarted_at, _ in rounds:
            assert any(it.stream_us / 1e6 > time.time() - (time.monotonic() - restarted_at) for it in ticks)

        # What was lost was published while the stream had no leader, and no more than that.
        lost = bridge.lost(stored, redacted_pms((it.subject, it.data) for it in items))
        per_kill = [[t for t in lost if k - 0.2 <= t <= k + ELECTION_BOUND_S] for _, k, _, _ in rounds]
        assert sum(len(x) for x in per_kill) == len(lost), "events lost outside an election"
        for (node, killed_at, _, caught_up_s), times in zip(rounds, per_kill, strict=True):
            assert len(times) <= RATE * ELECTION_BOUND_S
            span = (max(times) - min(times)) if times else 0.0
            FIGURES.append(
                f"kill -9 of the stream leader {node} at {RATE}/s: {len(times)} events lost "
                f"(published {min(times, default=killed_at) - killed_at:+.2f} to "
                f"{max(times, default=killed_at) - killed_at:+.2f} s around the kill, {span:.2f} s); "
                f"stream leaderless for {leaders.leaderless(killed_at):.2f} s as seen by stream info; "
                f"restarted node current after {caught_up_s:.2f} s"
            )
        FIGURES.append(
            f"  {len(lost)} of {len(bridge.sent)} events lost in all; {len(failures)} of "
            f"{len(askers.results)} requests failed, longest gap between answers {askers.longest_gap():.2f} s"
        )
        for name in ("ingest", "replica_a", "replica_b"):
            FIGURES.append(f"  {name} health after the kill: {health.transitions(name, rounds[0][1])}")
    finally:
        await nc.close()


async def leader_or_none(nc: Client) -> str | None:
    try:
        return await leader(nc)
    except Exception:  # no leader yet
        return None


@pytest.mark.parametrize("rounds", [1, pytest.param(3, marks=pytest.mark.soak)])
async def test_stepdown_and_rolling_restart_in_lame_duck_mode_under_load(
    cluster: NatsCluster, cstack: Stack, rounds: int
) -> None:
    await cluster.ready()
    ingest = cstack.ingest(**on(cluster, 1))
    ingest.wait_healthy(timeout=60)
    replica_a, replica_b = cstack.query(**on(cluster, 2)), cstack.query(**on(cluster, 3))
    nc = await connect_to(order_from(cluster, cluster.nodes[1]), "test")
    try:
        js = nc.jetstream()
        for r in (replica_a, replica_b):
            r.wait_healthy(timeout=60)
        bridge = Bridge(order_from(cluster, cluster.nodes[0]), seed=221, rate=RATE, workdir=cstack.tmp)
        asker_nc = await connect_to(order_from(cluster, cluster.nodes[1]), "askers")
        askers = Askers(asker_nc, timeout=1.0)
        health = HealthLog({"ingest": ingest, "replica_a": replica_a, "replica_b": replica_b})
        bridge.start()
        askers.start()
        health.start()
        await asyncio.sleep(2)
        ops: list[tuple[str, float, float, str, str]] = []  # (what, start, end, leader before, after)

        for r in range(rounds):
            suffix = f" (round {r + 1})" if rounds > 1 else ""
            before = await leader(nc)
            started = time.monotonic()
            await step_down(nc, DEFAULT_STREAM)
            await wait_for(lambda before=before: leader_other_than(nc, before), timeout=20, what="a leader")
            ops.append(("stepdown" + suffix, started, time.monotonic(), before, await leader(nc)))
            await asyncio.sleep(2)
            for node in cluster.nodes:  # a rolling restart: lame-duck mode, restart, catch up
                before = await leader(nc)
                started = time.monotonic()
                await asyncio.to_thread(node.lame_duck)
                exited = time.monotonic()
                node.start()
                await all_current(nc)
                ops.append(
                    (f"restart {cluster.name_of(node)}{suffix}", started, exited, before, await leader(nc))
                )
                await asyncio.sleep(1)
        await bridge.stop()
        await askers.stop()
        last = int((await js.stream_info(DEFAULT_STREAM)).state.last_seq)
        for svc in (ingest, replica_a, replica_b):
            await caught_up_to(svc, last)
        await health.stop()
        await asker_nc.close()

        assert ingest.stop() == 0
        items, stored = await stored_bridge_events(nc)
        tables = dump_file(cstack.db_path)
        assert dump(rebuild(items)) == tables
        oracle = Oracle([(bridge.subjects.get(d, ""), d) for d in stored])
        assert sum(r[-2] for r in tables["counters"] if r[0] == "message") == oracle.total_messages

        lost = bridge.lost(stored, redacted_pms((it.subject, it.data) for it in items))
        per_op = {what: [t for t in lost if a - 0.2 <= t <= b + 1.0] for what, a, b, _, _ in ops}
        assert sum(len(v) for v in per_op.values()) == len(lost), "events lost outside a handover"
        for (what, a, b, lead_before, lead_after), times in zip(ops, per_op.values(), strict=True):
            # At most one burst per cause: the leadership handover, and (restarts only) the
            # moment that node closed the bridge's own connection with publishes in flight.
            found = bursts(times)
            causes = (lead_before != lead_after) + what.startswith("restart")
            assert len(found) <= causes, (what, found)
            for _start, count, span_ms in found:
                assert count <= RATE * TRANSFER_BOUND_S and span_ms <= TRANSFER_BOUND_S * 1000, (what, found)
            FIGURES.append(
                f"{what} at {RATE}/s: {len(times)} events lost, in bursts (s after the start, events, "
                f"ms of publishing) {[(round(o - a, 2), n, round(ms)) for o, n, ms in found]}; "
                f"stream leader {lead_before} -> {lead_after}; took {b - a:.2f} s"
            )
        # Queries never stopped; requests in flight on a connection a node closed may fail.
        assert askers.longest_gap() < 2.0
        FIGURES.append(
            f"stepdown + rolling restart: {len(lost)} of {len(bridge.sent)} events lost in all; "
            f"{len(askers.failures())} of {len(askers.results)} requests failed, longest gap between "
            f"answers {askers.longest_gap():.2f} s"
        )
        start = ops[0][1]
        for name in ("ingest", "replica_a", "replica_b"):
            FIGURES.append(f"  {name} health from the stepdown on: {health.transitions(name, start)}")
    finally:
        await nc.close()


def bursts(times: list[float], gap: float = 0.2) -> list[tuple[float, int, float]]:
    """Lost publish times grouped where they are less than `gap` s apart: (start, count, span ms)."""
    out: list[list[float]] = []
    for t in sorted(times):
        if out and t - out[-1][-1] < gap:
            out[-1].append(t)
        else:
            out.append([t])
    return [(b[0], len(b), (b[-1] - b[0]) * 1000) for b in out]


async def leader_other_than(nc: Client, name: str) -> bool:
    try:
        return await leader(nc) != name
    except Exception:  # no leader yet
        return False


def status_has(svc: Service, code: int, *needles: str, absent: str = "") -> dict[str, Any] | None:
    try:
        got, body = svc.health()
    except Exception:
        return None
    status = str(body.get("status", ""))
    if got == code and all(n in status for n in needles) and not (absent and absent in status):
        return body
    return None


async def test_losing_two_nodes_stops_ingest_saying_why_and_loses_nothing_stored(
    cluster: NatsCluster, cstack: Stack
) -> None:
    await cluster.ready()
    ingest = cstack.ingest(**on(cluster, 1))
    ingest.wait_healthy(timeout=60)
    replica = cstack.query(**on(cluster, 2))
    nc = await connect_to(order_from(cluster, cluster.nodes[0]), "test")
    try:
        first = list(Simulator(seed=231).events(5_000))
        await publish_all(nc, first)
        last = await settled(nc, ingest)  # past the PM journal events ingest appended
        replica.wait_healthy(timeout=60)
        for svc in (ingest, replica):
            await caught_up_to(svc, last)
        await pms_deleted(nc)  # or the deletes still to come would change the stored messages
        before = await read_stream(nc)
        stats = await request(nc, {"command": "system.stats", "min_seq": last})

        lost_at = time.monotonic()
        for node in cluster.nodes[1:]:
            node.kill9()
        waits = {}
        for svc in (ingest, replica):
            body = await wait_for(
                lambda svc=svc: status_has(svc, 503, "stream USERSTATS"),
                timeout=30,
                what=f"{svc.module} to say the stream is unusable",
            )
            waits[svc.module] = (round(time.monotonic() - lost_at, 2), body["status"])
        metrics = ingest.metrics()
        assert 'userstats_ingest_jetstream_store_up{name="USERSTATS",store="stream"} 0.0' in metrics
        assert 'userstats_query_jetstream_store_up{name="USERSTATS",store="stream"} 0.0' in replica.metrics()
        # Ingest stays up at its checkpoint; the replica still answers from what it holds.
        assert ingest.proc is not None and ingest.proc.poll() is None
        assert ingest.health()[1]["checkpoint_seq"] == last
        again = await request(nc, {"command": "system.stats"}, timeout=10)
        assert again["success"] and again["data"]["total_messages"] == stats["data"]["total_messages"]

        back_at = time.monotonic()
        for node in cluster.nodes[1:]:
            node.start()
        for svc in (ingest, replica):
            await wait_for(lambda svc=svc: svc.health()[0] == 200, timeout=60, what=f"{svc.module} healthy")
        recovered = time.monotonic() - back_at
        second = list(Simulator(seed=232, start_us=1_765_000_000_000_000).events(2_000))
        await publish_all(nc, second)
        last = await settled(nc, ingest)
        for svc in (ingest, replica):
            await caught_up_to(svc, last)
        after = await read_stream(nc)
        assert after[: len(before)] == before  # everything the stream had stored is still there
        assert ingest.stop() == 0
        tables = dump_file(cstack.db_path)
        assert dump(rebuild(after)) == tables
        oracle = Oracle(first + second)
        assert sum(r[-2] for r in tables["counters"] if r[0] == "message") == oracle.total_messages
        FIGURES.append(
            f"two nodes of three killed: {waits}; healthy again {recovered:.2f} s after they restarted; "
            f"{len(before)} stored messages kept"
        )
    finally:
        await nc.close()


async def test_health_names_the_kv_and_the_object_store_when_they_cannot_be_reached(
    cluster: NatsCluster, cstack: Stack
) -> None:
    """The pointer KV and the Object Store, made R1 on node 3 beside an R3 stream: losing
    node 3 makes both services unhealthy, naming those two stores and not the stream."""
    await cluster.ready()
    nc = await connect_to(order_from(cluster, cluster.nodes[0]), "test")
    try:
        on_n3 = Replication(1, tags=("node:n3",))
        await snapshots.ensure_buckets(nc.jetstream(), on_n3, on_n3)
        env = on(cluster, 1, USERSTATS_POINTER_REPLICAS="1", USERSTATS_SNAPSHOT_REPLICAS="1")
        ingest = cstack.ingest(**env)
        ingest.wait_healthy(timeout=60)
        replica = cstack.query(
            **on(cluster, 2, USERSTATS_POINTER_REPLICAS="1", USERSTATS_SNAPSHOT_REPLICAS="1")
        )
        last = await publish_all(nc, Simulator(seed=241).events(2_000))
        replica.wait_healthy(timeout=60)
        await caught_up_to(ingest, last)
        cluster.node("n3").kill9()
        needles = ("KV bucket userstats_pointer", "Object Store userstats_snapshots")
        for svc in (ingest, replica):
            await wait_for(
                lambda svc=svc: status_has(svc, 503, *needles, absent="stream USERSTATS"),
                timeout=30,
                what=f"{svc.module} to name the KV and the Object Store",
            )
        text = ingest.metrics()
        assert 'userstats_ingest_jetstream_store_up{name="KV_userstats_pointer",store="pointer"} 0.0' in text
        assert 'userstats_ingest_jetstream_store_up{name="USERSTATS",store="stream"} 1.0' in text
        # The stream still works: ingest goes on projecting while it says what is missing.
        more = await publish_all(nc, Simulator(seed=242, start_us=1_765_000_000_000_000).events(1_000))
        await wait_for(
            lambda: (ingest.health()[1].get("checkpoint_seq") or 0) >= more, what="ingest to project"
        )
        cluster.node("n3").start()
        for svc in (ingest, replica):
            await wait_for(lambda svc=svc: svc.health()[0] == 200, timeout=60, what=f"{svc.module} healthy")
        await caught_up_to(replica, more)
    finally:
        await nc.close()


async def test_replication_is_applied_to_existing_stores_or_refused_with_a_reason(
    cluster: NatsCluster, cstack: Stack
) -> None:
    await cluster.ready()
    nc = await connect_to(order_from(cluster, cluster.nodes[0]), "test")
    try:
        js = nc.jetstream()
        ingest = cstack.ingest(NATS_URL=cluster.url)  # the default: R1
        ingest.wait_healthy(timeout=60)
        await publish_all(nc, Simulator(seed=261).events(3_000))
        await caught_up_to(ingest, await settled(nc, ingest))
        await pms_deleted(nc)  # before the stream's messages are compared below
        assert ingest.stop() == 0
        assert [(await js.stream_info(n)).config.num_replicas for n in STORES] == [1, 1, 1]
        before = await read_stream(nc)
        ingest = cstack.ingest(NATS_URL=cluster.url, USERSTATS_REPLICAS="3", USERSTATS_POINTER_REPLICAS="2")
        ingest.wait_healthy(timeout=60)
        assert ingest.stop() == 0
        assert [(await js.stream_info(n)).config.num_replicas for n in STORES] == [3, 2, 3]
        await all_current(nc)
        for node in cluster.nodes:  # every node now holds the whole history: each leads in turn
            await move_leader(nc, DEFAULT_STREAM, cluster.name_of(node))
            assert (await js.stream_info(DEFAULT_STREAM)).state.messages == len(before)
        assert (await read_stream(nc))[: len(before)] == before
        assert "stream USERSTATS changed from R1 to R3" in ingest.log.read_text()

        for extra, expect in (
            ({"USERSTATS_REPLICAS": "5"}, "the cluster has fewer JetStream servers than 5"),
            ({"USERSTATS_REPLICAS": "3", "USERSTATS_PLACEMENT_TAGS": "ssd"}, "tags not matched"),
        ):
            failed = cstack.ingest(NATS_URL=cluster.url, **extra)
            assert failed.proc is not None and failed.proc.wait(60) == 1
            out = failed.log.read_text()
            assert expect in out and "userstats.stream_replicas" in out, out[-2000:]
        assert (await js.stream_info(DEFAULT_STREAM)).config.num_replicas == 3  # left as it was
    finally:
        await nc.close()


async def test_replicas_above_one_on_a_single_server_are_refused_naming_the_setting(stack: Stack) -> None:
    ingest = stack.ingest(USERSTATS_REPLICAS="3")
    assert ingest.proc is not None and ingest.proc.wait(60) == 1
    out = ingest.log.read_text()
    assert "cannot create stream USERSTATS as R3" in out
    assert "not part of a cluster: set userstats.stream_replicas (or userstats.replicas) to 1" in out


async def test_the_rebuild_reader_resumes_through_another_node_when_its_node_dies(
    cluster: NatsCluster, cstack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="userstats.ingest.rawstream")
    await cluster.ready()
    ingest = cstack.ingest(**on(cluster, 1))
    ingest.wait_healthy(timeout=60)
    assert ingest.stop() == 0
    nc = await connect_to(order_from(cluster, cluster.nodes[0]), "test")
    try:
        last = await publish_all(nc, Simulator(seed=251).events(30_000))
        await move_leader(nc, DEFAULT_STREAM, "n3")
        doomed = cluster.node("n3")
        # the reader connects to node 3 (the stream's leader) first
        settings = NatsSettings(servers=order_from(cluster, doomed))
        got: list[int] = []
        killed: list[float] = []

        async def deliver(batch: rawstream.Columns) -> None:
            got.extend(batch[0])
            if not killed:
                killed.append(time.monotonic())
                await asyncio.to_thread(doomed.kill9)
            await asyncio.sleep(0.01)

        started = time.monotonic()
        end = await rawstream.read_range(
            nc.jetstream(), settings, DEFAULT_STREAM, STREAM_SUBJECTS, 1, last, deliver, batch=1_000
        )
        assert end == last
        assert got == list(range(1, last + 1))  # every message once, in order
        resumed = [r.getMessage() for r in caplog.records if "interrupted at seq" in r.getMessage()]
        assert resumed, "the read was never interrupted: the test did not test anything"
        FIGURES.append(
            f"rebuild reader: node killed after the first batch, read resumed and finished "
            f"{time.monotonic() - killed[0]:.2f} s later ({time.monotonic() - started:.2f} s in all); "
            f"{resumed}"
        )
    finally:
        await nc.close()
