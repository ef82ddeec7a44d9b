"""Query throughput and latency with concurrent requesters, against one or two replicas.

    python -m bench.query_rate [--seconds 10] [--concurrency 1,16] [--replicas 1,2]

The replicas hold the simulator's 100k events. Requesters are asyncio tasks in separate
client processes (each one NATS connection), each sending its next request as soon as the
previous reply arrives. `user.stats` cycles over 50 users; the tables only change when
events are applied, so repeated requests are answered from the reply cache, as in
production. The echo row is the transport's ceiling on this machine: a trivial responder
in one Python process, measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nats
from userstats.sim.generator import Simulator

from bench.common import percentile, report, stack
from testbed.harness import Service, Stack, connect, publish_all

BODIES: dict[str, list[bytes]] = {
    "user.stats": [
        json.dumps({"command": "user.stats", "username": f"420GUser{i}", "channel": "420Grindhouse"}).encode()
        for i in range(50)
    ],
    "channel.all_stats": [
        json.dumps(
            {
                "service": "userstats",
                "command": "channel.all_stats",
                "channel": "420Grindhouse",
                "limits": {"top_users": 20, "media_history": 15, "leaderboards": 10},
            }
        ).encode()
    ],
    "system.ping": [json.dumps({"command": "system.ping"}).encode()],
}


async def _client(url: str, subject: str, bodies: list[bytes], tasks: int, seconds: float) -> list[float]:
    nc = await nats.connect(url)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        i = k
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            msg = await nc.request(subject, bodies[i % len(bodies)], timeout=10)
            latencies.append(time.perf_counter() - t0)
            if b'"success":false' in msg.data:
                raise RuntimeError(msg.data[:200])
            i += 7

    await asyncio.gather(*(worker(k) for k in range(tasks)))
    await nc.close()
    return latencies


def _client_process(args: tuple[str, str, list[bytes], int, float], out: Any) -> None:
    try:
        out.put(asyncio.run(_client(*args)))
    except Exception as exc:  # report instead of leaving the parent waiting forever
        out.put(f"{type(exc).__name__}: {exc}")


def load(url: str, subject: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict[str, float]:
    """Spread `concurrency` requesters over up to 2 client processes; requests/s and latency."""
    procs = min(2, concurrency)
    per = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    queue: Any = mp.get_context("spawn").Queue()
    workers = [
        mp.get_context("spawn").Process(
            target=_client_process, args=((url, subject, bodies, n, seconds), queue)
        )
        for n in per
    ]
    for w in workers:
        w.start()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join()
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]}")
    latencies = [x for r in results for x in r]
    ms = [x * 1000 for x in latencies]
    return {"requests_per_s": len(ms) / seconds, "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


async def _echo(url: str, stop: Any) -> None:
    nc = await nats.connect(url)

    async def reply(msg: Any) -> None:
        await msg.respond(b'{"success":true}')

    await nc.subscribe("bench.echo", cb=reply)
    await asyncio.to_thread(stop.wait)
    await nc.close()


def _echo_process(url: str, stop: Any) -> None:
    asyncio.run(_echo(url, stop))


async def _traffic(url: str, rate: float, stop: Any) -> None:
    """Bridge-like events at a fixed rate, so the tables (and the reply cache) keep changing."""
    nc = await nats.connect(url)
    gen = Simulator(seed=9, start_us=1_765_000_000_000_000).events(10**9)
    started, sent = time.perf_counter(), 0
    while not stop.is_set():
        while sent < (time.perf_counter() - started) * rate:
            subject, data = next(gen)
            await nc.publish(subject, data)
            sent += 1
        await asyncio.sleep(0.005)
    await nc.close()


def _traffic_process(url: str, rate: float, stop: Any) -> None:
    asyncio.run(_traffic(url, rate, stop))


@contextmanager
def filled_stack(events: int) -> Iterator[tuple[Stack, list[Service]]]:
    """A stack with ingest, one replica, and `events` simulator events applied."""
    with stack() as s:
        s.ingest().wait_healthy()
        replicas = [s.query()]
        replicas[0].wait_healthy()

        async def fill() -> None:
            nc = await connect(s.nats.url)
            await publish_all(nc, list(Simulator(seed=1).events(events)))
            await nc.close()

        asyncio.run(fill())
        time.sleep(2)
        yield s, replicas


def echo_ceiling(url: str, concurrencies: list[int], seconds: float) -> dict[int, dict[str, float]]:
    """The transport's ceiling: a trivial responder in its own process, loaded the same way."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    echo = ctx.Process(target=_echo_process, args=(url, stop))
    echo.start()
    time.sleep(1)
    try:
        return {c: load(url, "bench.echo", [b"{}"], c, seconds) for c in concurrencies}
    finally:
        stop.set()
        echo.join()


def run(seconds: float, concurrencies: list[int], replica_counts: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with filled_stack(100_000) as (s, replicas):
        ctx = mp.get_context("spawn")
        ceiling = echo_ceiling(s.nats.url, concurrencies, seconds)
        for c in concurrencies:
            rows.append(
                {"command": "echo (transport ceiling)", "replicas": 1, "concurrency": c, **ceiling[c]}
            )
        for n in replica_counts:
            while len(replicas) < n:
                replicas.append(s.query())
                replicas[-1].wait_healthy()
            for command in ("system.ping", "user.stats", "channel.all_stats"):
                for c in concurrencies:
                    r = load(s.nats.url, "kryten.userstats.command", BODIES[command], c, seconds)
                    rows.append({"command": command, "replicas": n, "concurrency": c, **r})
            if n == replica_counts[0]:
                stop = ctx.Event()
                traffic = ctx.Process(target=_traffic_process, args=(s.nats.url, 1000.0, stop))
                traffic.start()
                for command in ("user.stats", "channel.all_stats"):
                    for c in concurrencies:
                        r = load(s.nats.url, "kryten.userstats.command", BODIES[command], c, seconds)
                        rows.append(
                            {"command": f"{command} + 1000 events/s", "replicas": n, "concurrency": c, **r}
                        )
                stop.set()
                traffic.join()
    echo_rate = {
        row["concurrency"]: row["requests_per_s"] for row in rows if row["command"].startswith("echo")
    }
    for row in rows:
        row["of_ceiling"] = f"{row['requests_per_s'] / echo_rate[row['concurrency']]:.0%}"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--replicas", default="1,2")
    args = parser.parse_args()
    rows = run(
        args.seconds,
        [int(c) for c in args.concurrency.split(",")],
        [int(n) for n in args.replicas.split(",")],
    )
    report(
        "query_rate",
        rows,
        ["command", "replicas", "concurrency", "requests_per_s", "of_ceiling", "p50_ms", "p99_ms"],
    )


if __name__ == "__main__":
    main()
