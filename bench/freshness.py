"""Freshness: time from publishing an event to a replica answering with it applied.

    python -m bench.freshness [--rates 1000,10000] [--seconds 20] [--poll-ms 5]
                              [--nats single,cluster]

Background traffic is core-published by the simulator at a fixed rate, like the bridge.
Two probes, one after the other under the same traffic, each for `--seconds`:

- `min_seq`: every 20 ms a probe event is published with a JetStream ack (to learn its
  sequence), then `system.stats` is requested with `min_seq` = that sequence: the reply
  comes once the replica has applied it. The latency covers storage, delivery, projection
  and the reply.
- plain read: every 20 ms a chat line of the user `plainprobe` is published (with a
  JetStream ack), then a plain `user.stats` (no `min_seq`) is requested every `--poll-ms`
  until its message count shows the line: what a client that only polls sees.

Each is reported against its floor: the same probe against a trivial responder in this
process under the same traffic (for the plain read, a responder that counts the probe
lines it receives from the stream through an ordered consumer, polled the same way).
On one nats-server, then on a three-node cluster with R3 stores; on the cluster, also
the events lost when the stream's leader is killed (kill -9) or steps down under that
traffic (second table, bench/results/leader_change.json): of the events published meanwhile
that the stream captures, those it did not store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from userstats.shared import events as ev
from userstats.shared.projection import is_captured
from userstats.shared.subjects import DEFAULT_STREAM
from userstats.sim.generator import BRIDGE_PM_WEIGHT, Simulator

from bench.common import TOPOLOGY_NAMES, percentile, ready, replication, report, stack, topologies
from testbed.harness import NatsCluster, connect, wait_for

BRIDGE_PREFIX = "kryten.events.cytube."


async def background(nc: object, rate: float, stop: asyncio.Event, seed: int = 5) -> tuple[int, int]:
    """Publish simulator events at `rate` until `stop`; returns how many were published and
    how many of them the stream captures (about 10% of the mix, mediaUpdate, usercount and
    the like, are not captured: stream_capture `projected`)."""
    sim = Simulator(
        seed=seed,
        pm_weight=BRIDGE_PM_WEIGHT,
        start_us=ev.to_us(ev.EPOCH) + int(time.time() * 1e6),
        step_us=int(1e6 / rate),
    )
    gen = sim.events(10**9)
    started = time.perf_counter()
    sent = captured = 0
    while not stop.is_set():
        due = int((time.perf_counter() - started) * rate)
        while sent < due:
            subject, data = next(gen)
            await nc.publish(subject, data)  # type: ignore[attr-defined]
            sent += 1
            captured += is_captured(subject)
        await asyncio.sleep(0.002)
    return sent, captured


MIN_SEQ = "min_seq system.stats"
PLAIN_USER, PROBE_CHANNEL, PROBE_DOMAIN = "plainprobe", "bench", "d"


def chat_line(user: str, i: int) -> bytes:
    return ev.encode(
        {
            "event_name": "chatMsg",
            "payload": {"username": user, "msg": f"p{i}", "time": i},
            "channel": PROBE_CHANNEL,
            "domain": PROBE_DOMAIN,
            "timestamp": ev.iso_from_us(int(time.time() * 1e6)),
        }
    )


CHAT_SUBJECT = "kryten.events.cytube.bench.chatmsg"


def shown(reply: bytes, i: int) -> bool:
    """A plain user.stats reply counts at least `i` lines of the probe user."""
    body = json.loads(reply)
    return bool(body.get("success")) and int(body["data"]["messages"]) >= i


async def min_seq_probes(nc: Any, js: Any, seconds: float) -> list[float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        i += 1
        t0 = time.perf_counter()
        ack = await js.publish(CHAT_SUBJECT, chat_line("probe", i))
        msg = await nc.request(
            "kryten.userstats.command",
            json.dumps({"command": "system.stats", "min_seq": ack.seq}).encode(),
            timeout=10,
        )
        latencies.append(time.perf_counter() - t0)
        assert json.loads(msg.data)["as_of_seq"] >= ack.seq
        await asyncio.sleep(0.02)
    return latencies


async def poll_until(nc: Any, subject: str, body: bytes, i: int, poll_s: float, t0: float) -> float:
    """Request `body` every `poll_s` until the reply shows the `i`-th line; seconds since t0."""
    while True:
        msg = await nc.request(subject, body, timeout=10)
        if shown(msg.data, i):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > 30:
            raise TimeoutError(f"probe line {i} not shown after 30 s: {msg.data[:200]!r}")
        await asyncio.sleep(poll_s)


async def plain_probes(
    nc: Any, js: Any, seconds: float, poll_s: float, user: str = PLAIN_USER, subject: str = ""
) -> list[float]:
    """Publish a chat line of `user`, poll plain `user.stats` (or `subject`'s trivial
    responder) until it shows; once untimed first (the user exists), then for `seconds`."""
    target = subject or "kryten.userstats.command"
    body = json.dumps(
        {"command": "user.stats", "username": user, "channel": PROBE_CHANNEL, "domain": PROBE_DOMAIN}
    ).encode()
    await js.publish(CHAT_SUBJECT, chat_line(user, 0))
    await poll_until(nc, target, body, 1, poll_s, time.perf_counter())
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    i = 1
    while time.perf_counter() < end:
        i += 1
        t0 = time.perf_counter()
        await js.publish(CHAT_SUBJECT, chat_line(user, i))
        latencies.append(await poll_until(nc, target, body, i, poll_s, t0))
        await asyncio.sleep(0.02)
    return latencies


class PlainFloor:
    """The plain probe's trivial responder: it counts the lines of `floorprobe` it receives
    from the stream (an ordered consumer of the probe subject, new messages only) and answers
    polls with that count. Subscribed before the background traffic starts (creating a
    consumer under 10,000 events/s on two busy cores can outlast the JetStream API timeout)."""

    SUBJECT = "bench.floor.plain"

    def __init__(self) -> None:
        self.seen = 0
        self.subs: list[Any] = []

    async def start(self, nc: Any, js: Any) -> None:
        async def count(msg: Any) -> None:
            if b'"floorprobe"' in msg.data:
                self.seen += 1

        async def answer(msg: Any) -> None:
            await msg.respond(json.dumps({"success": True, "data": {"messages": self.seen}}).encode())

        self.subs = [
            await js.subscribe(CHAT_SUBJECT, cb=count, ordered_consumer=True, deliver_policy="new"),
            await nc.subscribe(self.SUBJECT, cb=answer),
        ]

    async def probes(self, nc: Any, js: Any, seconds: float, poll_s: float) -> list[float]:
        """The plain probe, polled the same way, against this responder."""
        return await plain_probes(nc, js, seconds, poll_s, user="floorprobe", subject=self.SUBJECT)

    async def stop(self) -> None:
        for sub in self.subs:
            await sub.unsubscribe()


def row(topology: str, probe: str, rate: float, ms: list[float], floor_ms: list[float]) -> dict[str, object]:
    return {
        "nats": TOPOLOGY_NAMES[topology],
        "probe": probe,
        "offered_events_per_s": rate,
        "probes": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "floor_p50_ms": percentile(floor_ms, 50),
        "floor_p99_ms": percentile(floor_ms, 99),
        "p99_vs_floor": f"{percentile(ms, 99) / percentile(floor_ms, 99):.1f}x",
    }


async def measure(
    rate: float, seconds: float, topology: str = "single", poll_ms: float = 5.0
) -> list[dict[str, object]]:
    with stack(topology) as s:
        await ready(s)
        s.ingest(**replication(s)).wait_healthy(timeout=60)
        query = s.query(**replication(s))
        nc = await connect(s.nats.url)
        js = nc.jetstream()
        try:
            # one stored event first (a chat line of another user: usercount is not captured)
            await js.publish(CHAT_SUBJECT, chat_line("warmup", 0))
            query.wait_healthy()
            floor_responder = PlainFloor()
            await floor_responder.start(nc, js)
            stop = asyncio.Event()
            bg = asyncio.create_task(background(nc, rate, stop))
            await asyncio.sleep(2)  # warm up
            latencies = await min_seq_probes(nc, js, seconds)
            floor = await transport_floor(nc, js, len(latencies))
            plain = await plain_probes(nc, js, seconds, poll_ms / 1000)
            plain_fl = await floor_responder.probes(nc, js, seconds, poll_ms / 1000)
            stop.set()
            sent, _ = await bg
            await floor_responder.stop()
        finally:
            await nc.close()
    ms = [x * 1000 for x in latencies]
    rows = [
        row(topology, MIN_SEQ, rate, ms, [x * 1000 for x in floor]),
        row(
            topology,
            f"plain user.stats, polled every {poll_ms:g} ms",
            rate,
            [x * 1000 for x in plain],
            [x * 1000 for x in plain_fl],
        ),
    ]
    for r in rows:
        r["background_sent"] = sent
    return rows


async def transport_floor(nc: Any, js: Any, probes: int) -> list[float]:
    """The same probe (JetStream publish with ack, then a request) against a trivial
    responder in this process, under the same background traffic: the ceiling."""

    async def echo(msg: Any) -> None:
        await msg.respond(b"{}")

    sub = await nc.subscribe("bench.floor", cb=echo)
    out = []
    for i in range(probes):
        t0 = time.perf_counter()
        await js.publish(CHAT_SUBJECT, chat_line("floor", i))  # stored like a probe (usercount is not)
        await nc.request("bench.floor", b"{}", timeout=10)
        out.append(time.perf_counter() - t0)
        await asyncio.sleep(0.02)
    await sub.unsubscribe()
    return out


async def bridge_stored(nc: Any) -> int:
    """Simulator events (not the probes of channel `bench`) stored in the stream."""
    info = await nc.jetstream().stream_info(DEFAULT_STREAM, subjects_filter=BRIDGE_PREFIX + ">")
    subjects = info.state.subjects or {}
    return sum(n for subject, n in subjects.items() if not subject.startswith(BRIDGE_PREFIX + "bench."))


async def leader_of(js: Any) -> str | None:
    try:
        info = await js.stream_info(DEFAULT_STREAM)
    except Exception:  # no leader: no answer
        return None
    return info.cluster.leader if info.cluster else None


async def leader_change(rate: float, how: str) -> dict[str, object]:
    """Background traffic at `rate` on an R3 cluster; the stream's leader is killed (kill -9)
    or steps down; the events published meanwhile that the stream did not store."""
    with stack("cluster") as s:
        await ready(s)
        assert isinstance(s.nats, NatsCluster)
        s.ingest(**replication(s)).wait_healthy(timeout=60)
        s.query(**replication(s)).wait_healthy(timeout=60)
        nc = await connect(s.nats.url)
        js = nc.jetstream(timeout=0.5)
        try:
            first = await leader_of(js)
            assert first is not None
            # the background publisher on a node that stays up, as a bridge on another host would be
            survivor = next(n for n in s.nats.nodes if s.nats.name_of(n) != first)
            pub = await connect(s.nats.urls_from(survivor))
            stop = asyncio.Event()
            bg = asyncio.create_task(background(pub, rate, stop, seed=7))
            await asyncio.sleep(3)
            changed = time.monotonic()
            if how == "kill -9":
                s.nats.node(first).kill9()
            else:
                msg = await nc.request("$JS.API.STREAM.LEADER.STEPDOWN.USERSTATS", b"", timeout=5)
                assert json.loads(msg.data).get("success"), msg.data
            new = await wait_for(
                lambda: leader_other(js, first), timeout=30, interval=0.05, what="a new leader"
            )
            leaderless = time.monotonic() - changed
            await asyncio.sleep(3)
            stop.set()
            # only what the stream captures counts: the ~10% it does not store are not lost
            published, captured = await bg
            await pub.flush()
            await pub.close()
            await asyncio.sleep(1)  # the last publishes stored
            stored = await bridge_stored(nc)
        finally:
            await nc.close()
            if how == "kill -9" and first is not None:
                s.nats.node(first).start()
    return {
        "offered_events_per_s": rate,
        "change": how,
        "leader": f"{first} -> {new}",
        "new_leader_after_s": leaderless,
        "events_sent": captured,
        "events_lost": captured - stored,
        "lost_seconds_of_traffic": (captured - stored) / (rate * captured / published),
    }


async def leader_other(js: Any, first: str) -> str | None:
    name = await leader_of(js)
    return name if name and name != first else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000,10000")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--poll-ms", type=float, default=5.0, help="the plain probe's polling interval")
    parser.add_argument("--nats", default="single,cluster", help="single and/or cluster (3 nodes, R3)")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    chosen = topologies(args.nats)
    rows = [x for t in chosen for r in rates for x in asyncio.run(measure(r, args.seconds, t, args.poll_ms))]
    report(
        "freshness",
        rows,
        [
            "nats",
            "probe",
            "offered_events_per_s",
            "probes",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "floor_p50_ms",
            "floor_p99_ms",
            "p99_vs_floor",
        ],
    )
    if "cluster" in chosen:
        changes = [asyncio.run(leader_change(r, how)) for r in rates for how in ("kill -9", "stepdown")]
        print()
        report(
            "leader_change",
            changes,
            [
                "offered_events_per_s",
                "change",
                "leader",
                "new_leader_after_s",
                "events_sent",
                "events_lost",
                "lost_seconds_of_traffic",
            ],
        )


if __name__ == "__main__":
    main()
