"""Sustained projection: N simulator events already in the stream, then ingest starts.

    python -m bench.ingest_rate [--events 1000000] [--e2e 100000,1000000] [--nats single,cluster]

Reports events/s from ingest's first health answer until its checkpoint covers the stream,
and the same for a replica that loads the first snapshot and follows the stream: on one
nats-server, then on a three-node cluster with the stream, KV and Object Store at R3.

End to end (`--e2e`, each size on a fresh stack): ingest and a replica running and caught up
(empty), the events core-published at full speed like the bridge (at most 50k unstored in
flight, see testbed.harness.publish_all), timed from the first publish until a plain
`system.stats` of the replica, polled every 10 ms, answers with `as_of_seq` at the stream's
last sequence; the publishing part of the same run is its own row.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
from userstats.sim.generator import BRIDGE_PM_WEIGHT, Simulator

from bench.common import TOPOLOGY_NAMES, Timer, ready, replication, report, stack, topologies
from bench.rebuild_rate import read_only
from testbed.harness import Service, connect, publish_all, request


def wait_seq(svc: Service, key: str, target: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            code, body = svc.health()
        except httpx.TimeoutException:  # a busy process answers /health late: keep waiting
            continue
        if code == 200 and (body.get(key) or 0) >= target:
            return
        time.sleep(0.01)
    raise TimeoutError(f"{svc.module} did not reach seq {target}")


async def run(events: int, topology: str = "single") -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with stack(topology) as s:
        await ready(s)
        rep = replication(s)
        ingest = s.ingest(USERSTATS_SNAPSHOT_INTERVAL="3600", **rep)
        ingest.wait_healthy()
        ingest.stop()
        nc = await connect(s.nats.url)
        try:
            generated = list(Simulator(seed=1, pm_weight=BRIDGE_PM_WEIGHT).events(events))
            with Timer() as t:
                last = await publish_all(nc, generated)
            rows.append(
                {
                    "stage": "core publish, stored by the stream",
                    "events": events,
                    "seconds": t.seconds,
                    "events_per_s": events / t.seconds,
                }
            )
            read_s = await read_only(s.nats.url, last)
            ceiling = last / read_s
            rows.append(
                {
                    "stage": "ceiling: read the stream only (ordered consumer)",
                    "events": last,
                    "seconds": read_s,
                    "events_per_s": ceiling,
                }
            )
            ingest = s.ingest(USERSTATS_SNAPSHOT_INTERVAL="3600", **rep)
            ingest.wait_healthy(timeout=60)
            with Timer() as t:
                wait_seq(ingest, "checkpoint_seq", last)
            rows.append(
                {
                    "stage": "ingest: stream -> projection -> DuckDB",
                    "events": last,
                    "seconds": t.seconds,
                    "events_per_s": last / t.seconds,
                }
            )
            ingest.stop()  # publishes a final snapshot at the checkpoint
            ingest = s.ingest(USERSTATS_SNAPSHOT_INTERVAL="3600", **rep)
            ingest.wait_healthy(timeout=60)
            more = events // 2
            # the stream's seq after them: it stores only the captured events (no mediaUpdate,
            # usercount), plus ingest's journal events
            target = await publish_all(nc, list(Simulator(seed=2, pm_weight=BRIDGE_PM_WEIGHT).events(more)))
            # a replica loads the snapshot (first half) and follows the second half from the stream
            query = s.query(**rep)
            with Timer() as t:
                query.wait_healthy(timeout=600)
            rows.append(
                {
                    "stage": "replica: download + load snapshot",
                    "events": last,
                    "seconds": t.seconds,
                    "events_per_s": None,
                }
            )
            with Timer() as t:
                wait_seq(query, "as_of_seq", target)
            followed = target - int(query.health()[1]["snapshot_seq"] or 0)
            rows.append(
                {
                    "stage": "replica: follow the stream",
                    "events": followed,
                    "seconds": t.seconds,
                    "events_per_s": followed / t.seconds,
                }
            )
        finally:
            await nc.close()
    for row in rows:
        row["nats"] = TOPOLOGY_NAMES[topology]
    return rows


async def end_to_end(events: int, topology: str = "single") -> list[dict[str, object]]:
    """Publish `events` at full speed to a running ingest and replica; until the replica's
    plain `system.stats` shows them all."""
    with stack(topology) as s:
        await ready(s)
        rep = replication(s)
        s.ingest(USERSTATS_SNAPSHOT_INTERVAL="2", **rep).wait_healthy(timeout=60)
        s.query(**rep).wait_healthy(timeout=60)
        nc = await connect(s.nats.url)
        try:
            generated = list(Simulator(seed=1, pm_weight=BRIDGE_PM_WEIGHT).events(events))
            started = time.perf_counter()
            last = await publish_all(nc, generated)
            published = time.perf_counter() - started
            while True:
                reply = await request(nc, {"command": "system.stats"}, timeout=10)
                if reply.get("success") and int(reply.get("as_of_seq") or 0) >= last:
                    break
                if time.perf_counter() - started > 1200:
                    raise TimeoutError(f"replica not at seq {last}: {reply}")
                await asyncio.sleep(0.01)
            seconds = time.perf_counter() - started
        finally:
            await nc.close()
    return [
        {
            "nats": TOPOLOGY_NAMES[topology],
            "stage": "end to end: core publish at full speed, stored",
            "events": events,
            "seconds": published,
            "events_per_s": events / published,
        },
        {
            "nats": TOPOLOGY_NAMES[topology],
            "stage": "end to end: publish -> replica's system.stats shows all",
            "events": events,
            "seconds": seconds,
            "events_per_s": events / seconds,
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--e2e", default="100000,1000000", help="end-to-end sizes, comma-separated (empty: none)"
    )
    parser.add_argument("--nats", default="single,cluster", help="single and/or cluster (3 nodes, R3)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.e2e.split(",") if n.strip()]
    rows = []
    for topology in topologies(args.nats):
        part = asyncio.run(run(args.events, topology))
        for n in sizes:
            part += asyncio.run(end_to_end(n, topology))
        ceiling = next(r["events_per_s"] for r in part if str(r["stage"]).startswith("ceiling"))
        for r in part:
            if isinstance(r["events_per_s"], float) and "core" not in str(r["stage"]):
                r["of_read_ceiling"] = f"{r['events_per_s'] / ceiling:.0%}"  # type: ignore[operator]
        rows += part
    report(
        "ingest_rate",
        rows,
        ["nats", "stage", "events", "seconds", "events_per_s", "of_read_ceiling"],
    )


if __name__ == "__main__":
    main()
