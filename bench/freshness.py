"""Freshness: time from publishing an event to a replica answering with it applied.

    python -m bench.freshness [--rates 1000,10000] [--seconds 20]

Background traffic is core-published by the simulator at a fixed rate, like the bridge.
Every 20 ms a probe event is published with a JetStream ack (to learn its sequence), then
`system.stats` is requested with `min_seq` = that sequence: the reply comes once the
replica has applied it. The latency covers storage, delivery, projection and the reply.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from bench.common import percentile, report, stack
from shared import events as ev
from sim.generator import Simulator
from tests.harness import connect


async def background(nc: object, rate: float, stop: asyncio.Event) -> int:
    sim = Simulator(seed=5, start_us=ev.to_us(ev.EPOCH) + int(time.time() * 1e6), step_us=int(1e6 / rate))
    gen = sim.events(10**9)
    started = time.perf_counter()
    sent = 0
    while not stop.is_set():
        due = int((time.perf_counter() - started) * rate)
        while sent < due:
            subject, data = next(gen)
            await nc.publish(subject, data)  # type: ignore[attr-defined]
            sent += 1
        await asyncio.sleep(0.002)
    return sent


async def measure(rate: float, seconds: float) -> dict[str, object]:
    with stack() as s:
        s.ingest().wait_healthy()
        query = s.query()
        nc = await connect(s.nats.url)
        js = nc.jetstream()
        try:
            await js.publish(
                "kryten.events.cytube.bench.usercount",
                b'{"event_name":"usercount","payload":1,"channel":"bench","domain":"d"}',
            )
            query.wait_healthy()
            stop = asyncio.Event()
            bg = asyncio.create_task(background(nc, rate, stop))
            await asyncio.sleep(2)  # warm up
            latencies: list[float] = []
            end = time.perf_counter() + seconds
            i = 0
            while time.perf_counter() < end:
                i += 1
                body = ev.encode(
                    {
                        "event_name": "chatMsg",
                        "payload": {"username": "probe", "msg": f"p{i}", "time": i},
                        "channel": "bench",
                        "domain": "d",
                        "timestamp": ev.iso_from_us(int(time.time() * 1e6)),
                    }
                )
                t0 = time.perf_counter()
                ack = await js.publish("kryten.events.cytube.bench.chatmsg", body)
                msg = await nc.request(
                    "kryten.userstats.command",
                    json.dumps({"command": "system.stats", "min_seq": ack.seq}).encode(),
                    timeout=10,
                )
                latencies.append(time.perf_counter() - t0)
                assert json.loads(msg.data)["as_of_seq"] >= ack.seq
                await asyncio.sleep(0.02)
            floor = await transport_floor(nc, js, len(latencies))
            stop.set()
            sent = await bg
        finally:
            await nc.close()
    ms = [x * 1000 for x in latencies]
    floor_ms = [x * 1000 for x in floor]
    return {
        "offered_events_per_s": rate,
        "background_sent": sent,
        "probes": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "floor_p50_ms": percentile(floor_ms, 50),
        "floor_p99_ms": percentile(floor_ms, 99),
        "p99_vs_floor": f"{percentile(ms, 99) / percentile(floor_ms, 99):.1f}x",
    }


async def transport_floor(nc: Any, js: Any, probes: int) -> list[float]:
    """The same probe (JetStream publish with ack, then a request) against a trivial
    responder in this process, under the same background traffic: the ceiling."""

    async def echo(msg: Any) -> None:
        await msg.respond(b"{}")

    sub = await nc.subscribe("bench.floor", cb=echo)
    out = []
    for i in range(probes):
        t0 = time.perf_counter()
        await js.publish(
            "kryten.events.cytube.bench.usercount", b'{"event_name":"usercount","payload":%d}' % i
        )
        await nc.request("bench.floor", b"{}", timeout=10)
        out.append(time.perf_counter() - t0)
        await asyncio.sleep(0.02)
    await sub.unsubscribe()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="1000,10000")
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    rows = [asyncio.run(measure(float(r), args.seconds)) for r in args.rates.split(",")]
    report(
        "freshness",
        rows,
        [
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


if __name__ == "__main__":
    main()
