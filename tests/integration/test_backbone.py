"""Issue 2: stream capture -> exactly-once projection -> snapshots -> replicas, as real processes."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from userstats.sim.generator import Simulator

from testbed.harness import (
    Service,
    Stack,
    caught_up,
    connect,
    metric,
    metric_becomes,
    publish_all,
    request,
    stream_last_seq,
    wait_for,
)
from tests.integration.streamtools import Oracle, dump, dump_file, read_stream, rebuild


async def test_replica_reports_exact_totals(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    events = list(Simulator(seed=11).events(20_000))
    oracle = Oracle(events)
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, events)
        query.wait_healthy()
        await caught_up(nc, query)
        stats = (await request(nc, {"command": "system.stats"}))["data"]
        assert stats["total_messages"] == oracle.total_messages
        assert stats["total_pms"] == sum(oracle.pms.values())
        assert stats["total_users"] == len(oracle.users)
        for user, channel, domain in sorted(oracle.messages)[:: max(1, len(oracle.messages) // 25)]:
            reply = await request(nc, {"command": "user.messages", "username": user, "domain": domain})
            assert reply["success"] is True
            assert {r["channel"]: r["count"] for r in reply["data"]["channels"]} == oracle.user_messages(
                user, domain
            )
            seed = await request(
                nc, {"username": user, "channel": channel}, f"cytube.query.userstats.{domain}.user.messages"
            )
            assert seed["data"] == {
                "username": user,
                "channel": channel,
                "message_count": oracle.messages[(user, channel, domain)],
            }
        await metric_becomes(query, "userstats_total_messages", oracle.total_messages)
        await metric_becomes(query, "userstats_total_pms", sum(oracle.pms.values()))
        await metric_becomes(query, "userstats_query_as_of_seq", await stream_last_seq(nc))
        per_channel = sum(
            n for (u, c, d), n in oracle.messages.items() if (d, c) == ("cytu.be", "420Grindhouse")
        )
        await metric_becomes(
            query, 'userstats_channel_messages{channel="420Grindhouse",domain="cytu.be"}', per_channel
        )
        top = max(
            (n for (u, c, d), n in oracle.messages.items() if d == "cytu.be" and u != "[server]"), default=0
        )
        assert re.search(
            rf'^userstats_top_user_messages{{domain="cytu.be",username="[^"]+"}} {top}\.0$',
            query.metrics(),
            re.M,
        )
    finally:
        await nc.close()


async def test_metrics_as_of_seq_is_the_sequence_their_totals_reflect(stack: Stack) -> None:
    """A scrape that says `userstats_query_as_of_seq N` counts every event up to N (found by
    the compose test: a replica showed as_of_seq at the end of a load and totals from before)."""
    stack.ingest().wait_healthy()
    query = stack.query()
    query.wait_healthy()
    sim = Simulator(seed=16)
    published: list[tuple[str, bytes]] = []
    nc = await connect(stack.nats.url)
    try:
        for _ in range(8):
            events = list(sim.events(3_000))
            published += events
            last = await publish_all(nc, events)

            def claims(at: int = last) -> str | None:
                text = query.metrics()
                return text if (metric(text, "userstats_query_as_of_seq") or 0) >= at else None

            text = await wait_for(claims, timeout=30, interval=0.005, what=f"as_of_seq {last} on /metrics")
            assert metric(text, "userstats_total_messages") == Oracle(published).total_messages
    finally:
        await nc.close()


async def test_events_published_while_ingest_is_down_are_projected(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()  # creates the stream
    assert ingest.stop() == 0
    events = list(Simulator(seed=12).events(5_000))
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, events)  # nobody is projecting: the stream keeps them
        ingest = stack.ingest()
        ingest.wait_healthy()
        await caught_up(nc, ingest)
        query = stack.query()
        query.wait_healthy()
        await caught_up(nc, query)
        stats = (await request(nc, {"command": "system.stats"}))["data"]
        assert stats["total_messages"] == Oracle(events).total_messages
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("n", "kills"),
    [(120_000, (0.2, 0.5)), pytest.param(1_000_000, (0.1, 0.3, 0.5, 0.7, 0.9), marks=pytest.mark.soak)],
)
async def test_kill_9_during_a_large_flow_loses_and_doubles_nothing(
    stack: Stack, n: int, kills: tuple[float, ...]
) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    events = list(Simulator(seed=13).events(n))
    nc = await connect(stack.nats.url)
    try:
        last = await publish_all(nc, events)
        for fraction in kills:
            # kill -9 while the checkpoint is partway through the backlog
            current = ingest

            def partway(svc: Service = current, at: float = last * fraction) -> int:
                seq = svc.health()[1]["checkpoint_seq"] or 0
                return seq if seq > at else 0

            reported = await wait_for(partway, timeout=60, interval=0.02, what="projection to be partway")
            ingest.kill9()
            ingest = stack.ingest()
            resumed = ingest.wait_healthy()["checkpoint_seq"]
            assert reported <= resumed < last  # what was reported committed survived the kill
        await caught_up(nc, ingest)
        assert ingest.stop() == 0
        live = dump_file(stack.db_path)
        rebuilt = dump(rebuild(await read_stream(nc)))
        assert live == rebuilt  # every table, row by row
        total = sum(row[6] for row in live["counters"] if row[0] == "message")
        assert total == Oracle(events).total_messages
    finally:
        await nc.close()


async def test_three_replicas_share_the_load_agree_and_each_request_gets_one_reply(stack: Stack) -> None:
    """The compose topology as plain processes: NATS, ingest, three query replicas."""
    ingest = stack.ingest()
    ingest.wait_healthy()
    replicas = [stack.query(), stack.query(), stack.query()]
    nc = await connect(stack.nats.url)
    try:
        events = list(Simulator(seed=14).events(10_000))
        await publish_all(nc, events)
        for r in replicas:
            r.wait_healthy()
            await caught_up(nc, r)
        replies: dict[str, list[bytes]] = {}

        async def collect(msg: object) -> None:
            replies.setdefault(msg.subject, []).append(msg.data)  # type: ignore[attr-defined]

        sub = await nc.subscribe("_INBOX.onereply.>", cb=collect)
        body = json.dumps({"command": "leaderboard.messages", "limit": 5}).encode()
        for i in range(600):
            await nc.publish("kryten.userstats.command", body, reply=f"_INBOX.onereply.{i}")
        await nc.flush()
        await wait_for(lambda: len(replies) == 600, timeout=10, what="600 replies")
        await asyncio.sleep(0.5)  # time for any duplicate reply to arrive
        await sub.unsubscribe()
        assert all(len(v) == 1 for v in replies.values())
        assert len({v[0] for v in replies.values()}) == 1  # every replica gave the same bytes
        served = [
            metric(r.metrics(), 'userstats_query_requests_total{command="leaderboard.messages",outcome="ok"}')
            for r in replicas
        ]
        assert sum(x or 0 for x in served) == 600 and min(x or 0 for x in served) > 0  # load spread
        oracle = Oracle(events)
        for r in replicas:  # what Prometheus scrapes from each replica agrees
            await metric_becomes(r, "userstats_total_messages", oracle.total_messages)
            await metric_becomes(r, "userstats_total_pms", sum(oracle.pms.values()))
            await metric_becomes(r, "userstats_total_users_tracked", len(oracle.users))
    finally:
        await nc.close()


async def test_malformed_envelopes_become_dead_letters(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    good = list(Simulator(seed=15).events(1_000))
    bad = [
        ("kryten.events.cytube.c.chatmsg", b"\x00\x01garbage"),
        ("kryten.events.cytube.c.chatmsg", b'{"event_name": "chatMsg"}'),
        (
            "kryten.events.cytube.c.adduser",
            b'{"event_name": "addUser", "payload": {"name": 5}, "channel": "c", "domain": "d"}',
        ),
    ]
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, good[:500] + bad + good[500:])
        query.wait_healthy()
        await caught_up(nc, query)
        stats = (await request(nc, {"command": "system.stats"}))["data"]
        assert stats["total_messages"] == Oracle(good).total_messages
        assert metric(ingest.metrics(), "userstats_ingest_dead_letters_total") == 3
        await wait_for(
            lambda: metric(query.metrics(), "userstats_query_dead_letters") == 3, what="replica dead letters"
        )
    finally:
        await nc.close()


async def test_malformed_requests_get_error_envelopes(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, Simulator(seed=16).events(100))
        query.wait_healthy()
        await caught_up(nc, query)
        cases = [
            (b"{not json", None, "Invalid JSON"),
            (b"[]", None, "expected a JSON object"),
            ({"command": "bogus.cmd"}, "bogus.cmd", "Unknown command: bogus.cmd"),
            ({"command": "user.stats"}, "user.stats", "username required"),
            ({"service": "robot", "command": "system.ping"}, None, "Command intended for 'robot'"),
        ]
        for body, command, message in cases:
            reply = await request(nc, body)
            assert reply["success"] is False and reply["service"] == "userstats"
            assert message in reply["error"]
            assert reply.get("command") == command
            assert "Traceback" not in reply["error"]
        seed = await request(nc, b"", "cytube.query.userstats.cytu.be.no.such")
        assert seed["success"] is False and "Unknown query type" in seed["error"]
        assert (await request(nc, {"command": "system.ping"}))["data"]["pong"] is True
    finally:
        await nc.close()
