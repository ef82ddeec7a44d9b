"""The HTTP face of one replica against its NATS face, same commands, same load.

    python -m bench.http_rate [--events 100000] [--seconds 10] [--concurrency 16]

A replica holds N simulator events. Requesters (asyncio tasks in two client processes)
send their next request as soon as the previous answer arrives: over NATS, one connection
per process; over HTTP, one keep-alive connection per requester (a minimal HTTP/1.1
client on asyncio streams, so the client costs little of the two cores). `user.stats`
draws each request's user uniformly from every user of the corpus (bench.sampling: four
channels, 2,173 users who chatted at 100k events), each with the channel it chats in. The channel page row is
`GET /channel/cytu.be/420Grindhouse`; its "server p99" is the replica's own time for the
request (the `Server-Timing` header: from the route being called to the response built),
which excludes the client and the network.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import re
import time
from typing import Any
from urllib.parse import quote

import nats
from userstats.sim.generator import DEFAULT_CHANNELS

from bench.common import percentile, report
from bench.query_rate import _traffic_process, filled_stack
from bench.sampling import corpus_users

TIMING = re.compile(rb"server-timing: app;dur=([0-9.]+)", re.I)


def nats_bodies(command: str, users: list[tuple[str, str, str]]) -> list[bytes]:
    if command == "user.stats":
        return [
            json.dumps({"command": "user.stats", "username": u, "channel": c, "domain": d}).encode()
            for u, c, d in users
        ]
    channel, domain = DEFAULT_CHANNELS[0][1], DEFAULT_CHANNELS[0][0]
    return [json.dumps({"command": command, "channel": channel, "domain": domain}).encode()]


def http_targets(kind: str, users: list[tuple[str, str, str]]) -> list[str]:
    if kind == "user.stats":
        return [
            f"/api/v1/user.stats?username={quote(u)}&channel={quote(c)}&domain={quote(d)}"
            for u, c, d in users
        ]
    domain, channel = DEFAULT_CHANNELS[0]
    if kind == "channel.all_stats":
        return [f"/api/v1/channel.all_stats?channel={channel}&domain={domain}"]
    return [f"/channel/{domain}/{channel}"]


async def _nats_client(url: str, bodies: list[bytes], tasks: int, seconds: float, seed: int) -> list[float]:
    nc = await nats.connect(url)
    rng = random.Random(seed)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            body = rng.choice(bodies)
            t0 = time.perf_counter()
            msg = await nc.request("kryten.userstats.command", body, timeout=10)
            latencies.append(time.perf_counter() - t0)
            if b'"success":false' in msg.data:
                raise RuntimeError(msg.data[:200])

    await asyncio.gather(*(worker() for _ in range(tasks)))
    await nc.close()
    return latencies


async def _http_client(
    port: int, targets: list[str], tasks: int, seconds: float, seed: int
) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    latencies: list[float] = []
    server: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                target = rng.choice(targets)
                t0 = time.perf_counter()
                writer.write(f"GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 200") or b'"success":false' in body[:200]:
                    raise RuntimeError(head[:100] + body[:200])
                timing = TIMING.search(head)
                if timing:
                    server.append(float(timing.group(1)) / 1000)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return latencies, server


def _client_process(kind: str, args: tuple[Any, ...], out: Any) -> None:
    try:
        if kind == "nats":
            out.put((asyncio.run(_nats_client(*args)), []))
        else:
            out.put(asyncio.run(_http_client(*args)))
    except Exception as exc:  # report instead of leaving the parent waiting forever
        out.put(f"{type(exc).__name__}: {exc}")


def load(kind: str, where: Any, items: list[Any], concurrency: int, seconds: float) -> dict[str, float]:
    """`concurrency` requesters in up to 2 client processes; requests/s and latencies."""
    ctx = mp.get_context("spawn")
    procs = min(2, concurrency)
    per = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    queue: Any = ctx.Queue()
    workers = [
        ctx.Process(target=_client_process, args=(kind, (where, items, n, seconds, i), queue))
        for i, n in enumerate(per)
    ]
    for w in workers:
        w.start()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join()
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]}")
    ms = [x * 1000 for r in results for x in r[0]]
    server = [x * 1000 for r in results for x in r[1]]
    row = {"requests_per_s": len(ms) / seconds, "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
    if server:
        row["server_p99_ms"] = percentile(server, 99)
    return row


async def _warm(url: str, bodies: list[bytes]) -> None:
    nc = await nats.connect(url)
    for body in bodies:
        await nc.request("kryten.userstats.command", body, timeout=30)
    await nc.close()


def run(events: int, seconds: float, concurrency: int) -> list[dict[str, Any]]:
    users = corpus_users(events)
    rows: list[dict[str, Any]] = []
    with filled_stack(events) as (s, replicas):
        port = replicas[0].port
        # Every row starts from the same cache: each user asked once (what a replica that has
        # served for a while holds); the "+ events/s" rows then pay for uncached replies too.
        asyncio.run(_warm(s.nats.url, nats_bodies("user.stats", users)))
        cases = [
            ("user.stats", "nats", s.nats.url, nats_bodies("user.stats", users)),
            ("user.stats", "http", port, http_targets("user.stats", users)),
            ("channel.all_stats", "nats", s.nats.url, nats_bodies("channel.all_stats", users)),
            ("channel.all_stats", "http", port, http_targets("channel.all_stats", users)),
            ("channel page", "http", port, http_targets("page", users)),
        ]
        ctx = mp.get_context("spawn")
        for traffic in (0.0, 1000.0):
            stop = ctx.Event()
            sender = (
                ctx.Process(target=_traffic_process, args=(s.nats.url, traffic, stop)) if traffic else None
            )
            if sender is not None:
                sender.start()
            for what, kind, where, items in cases:
                r = load(kind, where, items, concurrency, seconds)
                label = f"GET {items[0].split('?')[0]}" if kind == "http" else f"NATS {what}"
                rows.append(
                    {
                        "request": label,
                        "events_per_s": traffic,
                        "transport": kind,
                        "users": len(items),
                        "concurrency": concurrency,
                        **r,
                    }
                )
            stop.set()
            if sender is not None:
                sender.join()
    nats_rate = {
        (r["request"].split()[-1], r["events_per_s"]): r["requests_per_s"]
        for r in rows
        if r["transport"] == "nats"
    }
    for row in rows:
        key = (row["request"].rsplit("/", 1)[-1], row["events_per_s"])
        if row["transport"] == "http" and key in nats_rate:
            row["of_nats"] = f"{row['requests_per_s'] / nats_rate[key]:.0%}"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rows = run(args.events, args.seconds, args.concurrency)
    report(
        "http_rate",
        rows,
        [
            "request",
            "events_per_s",
            "users",
            "concurrency",
            "requests_per_s",
            "of_nats",
            "p50_ms",
            "p99_ms",
            "server_p99_ms",
        ],
    )


if __name__ == "__main__":
    main()
