"""`userstats-sim`: publish realistic bridge traffic to NATS, or write it to a JSONL file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from shared import events as ev
from shared import logs, natsconn
from shared.settings import NatsSettings
from sim.generator import Simulator

log = logging.getLogger("sim")


def parse_start(value: str) -> int:
    if value == "now":
        return ev.to_us(datetime.now(UTC))
    try:
        return ev.to_us(datetime.fromisoformat(value))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--start: expected 'now' or an ISO-8601 time, got {value!r}"
        ) from None


async def publish(sim: Simulator, count: int, rate: float, servers: list[str]) -> None:
    nc = await natsconn.connect(NatsSettings(servers=servers), "userstats-sim")
    started = time.perf_counter()
    sent = 0
    try:
        for subject, data in sim.events(count):
            await nc.publish(subject, data)
            sent += 1
            if rate > 0:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await nc.flush()
                    await asyncio.sleep(ahead)
            elif sent % 10_000 == 0:
                await nc.flush()
            if sent % 100_000 == 0:
                log.info("%d events published (%.0f/s)", sent, sent / (time.perf_counter() - started))
        await nc.flush()
    finally:
        await nc.drain()
    elapsed = time.perf_counter() - started
    log.info("published %d events in %.2f s (%.0f events/s)", sent, elapsed, sent / max(elapsed, 1e-9))


def write_jsonl(sim: Simulator, count: int, path: Path) -> None:
    enc = msgspec.json.Encoder()
    with path.open("wb") as f:
        for subject, data in sim.events(count):
            f.write(enc.encode({"subject": subject, "envelope": msgspec.Raw(data)}))
            f.write(b"\n")
    log.info("wrote %d events to %s", count, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="userstats-sim",
        description="Publish deterministic kryten-robot style events (core NATS, like the bridge).",
    )
    parser.add_argument("--count", type=int, default=10_000, help="events to produce (default 10000)")
    parser.add_argument("--rate", type=float, default=0, help="events per second; 0 = as fast as possible")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--start", type=parse_start, default=None, help="event time of the first event: 'now' or ISO-8601"
    )
    parser.add_argument("--users", type=int, default=200, help="users per channel")
    parser.add_argument(
        "--jsonl", type=Path, help="write {subject, envelope} lines here instead of publishing"
    )
    parser.add_argument("--nats-url", default=None, help="default: $NATS_URL or nats://127.0.0.1:4222")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    step = int(1_000_000 / args.rate) if args.rate > 0 else 20_000
    kwargs = {"start_us": args.start} if args.start is not None else {}
    sim = Simulator(seed=args.seed, step_us=step, users_per_channel=args.users, **kwargs)
    if args.jsonl:
        write_jsonl(sim, args.count, args.jsonl)
        return
    servers = (args.nats_url or os.environ.get("NATS_URL") or "nats://127.0.0.1:4222").split(",")
    try:
        asyncio.run(publish(sim, args.count, args.rate, servers))
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        log.error("cannot publish: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
