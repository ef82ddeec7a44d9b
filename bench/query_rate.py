"""Query throughput and latency with concurrent requesters, against one or two replicas.

    python -m bench.query_rate [--events 100000] [--seconds 10] [--concurrency 1,16]
                               [--replicas 1,2] [--draws uniform,zipf]

The replicas hold N events of the benches' corpus (bench.sampling: four channels, 2,173
users who chatted at 100k events). Requesters are asyncio tasks in up to two client
processes (each one NATS connection), each sending its next request as soon as the previous
reply arrives. Each `user.stats` request is for a user drawn from every user of the corpus
(uniformly, then Zipf as a second row), with the channel the user chats in; each
`channel.all_stats` request for a channel drawn the same way from the four. Beside each row:
how many distinct users or channels were asked, and the replicas' cache hit ratio meanwhile
(from their /metrics). The `50 users (cached comparison)` row is the old measure: 50 users,
whose replies the cache holds after the first pass. The echo row is the transport's ceiling
on this machine: a trivial responder in one Python process, measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import nats

from bench.common import percentile, report, stack
from bench.sampling import (
    CACHED_USERS,
    DRAWS,
    Draw,
    User,
    corpus_channels,
    corpus_users,
    draws,
    hit_ratio,
    simulator,
)
from testbed.harness import Service, Stack, caught_up, connect, pms_deleted, publish_all


def user_bodies(users: list[User]) -> list[bytes]:
    """One `user.stats` request per user, with the channel and domain the user chats in."""
    return [
        json.dumps({"command": "user.stats", "username": u, "channel": c, "domain": d}).encode()
        for u, c, d in users
    ]


def channel_bodies(command: str, channels: list[tuple[str, str]]) -> list[bytes]:
    extra = (
        {"limits": {"top_users": 20, "media_history": 15, "leaderboards": 10}}
        if command == "channel.all_stats"
        else {}
    )
    return [
        json.dumps({"service": "userstats", "command": command, "channel": c, "domain": d, **extra}).encode()
        for c, d in channels
    ]


PING = [json.dumps({"command": "system.ping"}).encode()]


async def _client(
    url: str, subject: str, bodies: list[bytes], tasks: int, seconds: float, draw: str, seed: int
) -> tuple[list[float], list[int]]:
    nc = await nats.connect(url)
    pick = Draw(draw, len(bodies), seed)
    latencies: list[float] = []
    asked: set[int] = set()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            i = pick()
            asked.add(i)
            t0 = time.perf_counter()
            msg = await nc.request(subject, bodies[i], timeout=10)
            latencies.append(time.perf_counter() - t0)
            if b'"success":false' in msg.data:
                raise RuntimeError(msg.data[:200])

    await asyncio.gather(*(worker() for _ in range(tasks)))
    await nc.close()
    return latencies, sorted(asked)


def _client_process(args: tuple[str, str, list[bytes], int, float, str, int], out: Any) -> None:
    try:
        out.put(asyncio.run(_client(*args)))
    except Exception as exc:  # report instead of leaving the parent waiting forever
        out.put(f"{type(exc).__name__}: {exc}")


def load(
    url: str,
    subject: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    draw: str = "uniform",
    replicas: Sequence[Service] = (),
) -> dict[str, Any]:
    """Spread `concurrency` requesters over up to 2 client processes, each request's body
    drawn from `bodies` (`draw`: see bench.sampling); requests/s, latency, how many distinct
    bodies were asked, and the replicas' cache hit ratio meanwhile (None without replicas)."""
    procs = min(2, concurrency)
    per = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    ctx = mp.get_context("spawn")
    queue: Any = ctx.Queue()
    workers = [
        ctx.Process(target=_client_process, args=((url, subject, bodies, n, seconds, draw, k), queue))
        for k, n in enumerate(per)
    ]
    before = [r.metrics() for r in replicas]
    for w in workers:
        w.start()
    results = [queue.get(timeout=seconds + 120) for _ in workers]
    for w in workers:
        w.join()
    after = [r.metrics() for r in replicas]
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]}")
    ms = [x * 1000 for r in results for x in r[0]]
    ratio = hit_ratio(before, after) if replicas else None
    return {
        "requests": len(ms),
        "requests_per_s": len(ms) / seconds,
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "asked": len({i for r in results for i in r[1]}),
        "cache_hit_ratio": ratio,
        "cache_hits": "" if not replicas else "n/a" if ratio is None else f"{ratio:.1%}",
    }


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
    """Bridge-like events of the corpus at a fixed rate, so the tables (and the reply cache)
    keep changing for the users and channels the requests draw."""
    nc = await nats.connect(url)
    gen = simulator(seed=9, start_us=1_765_000_000_000_000).events(10**9)
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
    """A stack with ingest, one replica, and the corpus's first `events` events applied,
    their raw PMs erased (so nothing runs in the background at rest)."""
    with stack() as s:
        s.ingest().wait_healthy()
        replicas = [s.query()]
        replicas[0].wait_healthy()

        async def fill() -> None:
            nc = await connect(s.nats.url)
            await publish_all(nc, list(simulator(seed=1).events(events)))
            await caught_up(nc, replicas[0])  # every event applied before the first row
            await pms_deleted(nc, timeout=600)  # and ingest's erasing done: at rest means idle
            await nc.close()

        asyncio.run(fill())
        yield s, replicas


def echo_ceiling(url: str, concurrencies: list[int], seconds: float) -> dict[int, dict[str, Any]]:
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


def cases(users: list[User], chosen: list[str]) -> list[tuple[str, str, str, list[bytes]]]:
    """(command, draw, what it draws over, bodies) of the at-rest rows."""
    channels = corpus_channels()
    out = [("system.ping", "", "", PING)]
    for d in chosen:
        out.append(("user.stats", d, f"{len(users):,} users", user_bodies(users)))
    out.append(
        (
            "user.stats",
            "uniform",
            f"{CACHED_USERS} users (cached comparison)",
            user_bodies(users[:CACHED_USERS]),
        )
    )
    for d in chosen:
        out.append(
            (
                "channel.all_stats",
                d,
                f"{len(channels)} channels",
                channel_bodies("channel.all_stats", channels),
            )
        )
    return out


def run(
    events: int, seconds: float, concurrencies: list[int], replica_counts: list[int], chosen: list[str]
) -> list[dict[str, Any]]:
    users = corpus_users(events)
    rows: list[dict[str, Any]] = []
    with filled_stack(events) as (s, replicas):
        ctx = mp.get_context("spawn")
        ceiling = echo_ceiling(s.nats.url, concurrencies, seconds)
        for c in concurrencies:
            rows.append(
                {"command": "echo (transport ceiling)", "replicas": 1, "concurrency": c, **ceiling[c]}
            )
        at_rest = cases(users, chosen)
        for n in replica_counts:
            while len(replicas) < n:
                replicas.append(s.query())
                replicas[-1].wait_healthy()
            for command, d, over, bodies in at_rest:
                for c in concurrencies:
                    r = load(s.nats.url, SUBJECT, bodies, c, seconds, d or "uniform", replicas[:n])
                    rows.append(
                        {"command": command, "draw": d, "over": over, "replicas": n, "concurrency": c, **r}
                    )
            if n == replica_counts[0]:
                stop = ctx.Event()
                traffic = ctx.Process(target=_traffic_process, args=(s.nats.url, 1000.0, stop))
                traffic.start()
                for command, d, over, bodies in at_rest:
                    if not d or "cached" in over:
                        continue
                    for c in concurrencies:
                        r = load(s.nats.url, SUBJECT, bodies, c, seconds, d, replicas[:n])
                        rows.append(
                            {
                                "command": f"{command} + 1000 events/s",
                                "draw": d,
                                "over": over,
                                "replicas": n,
                                "concurrency": c,
                                **r,
                            }
                        )
                stop.set()
                traffic.join()
    echo_rate = {
        row["concurrency"]: row["requests_per_s"] for row in rows if row["command"].startswith("echo")
    }
    for row in rows:
        row["of_ceiling"] = f"{row['requests_per_s'] / echo_rate[row['concurrency']]:.0%}"
    return rows


SUBJECT = "kryten.userstats.command"
COLUMNS = [
    "command",
    "draw",
    "over",
    "replicas",
    "concurrency",
    "requests_per_s",
    "of_ceiling",
    "p50_ms",
    "p99_ms",
    "cache_hits",
    "asked",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--draws", default=",".join(DRAWS), help="uniform and/or zipf")
    args = parser.parse_args()
    rows = run(
        args.events,
        args.seconds,
        [int(c) for c in args.concurrency.split(",")],
        [int(n) for n in args.replicas.split(",")],
        draws(args.draws),
    )
    report("query_rate", rows, COLUMNS)


if __name__ == "__main__":
    main()
