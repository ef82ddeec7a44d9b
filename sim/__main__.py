"""`userstats-sim`: publish realistic bridge traffic to NATS, or write it to a JSONL file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from nats.errors import Error as NatsError
from userstats.shared import cli, natsconn, settings_load
from userstats.shared import events as ev
from userstats.shared.settings import NatsSettings
from userstats.sim.generator import Simulator

log = logging.getLogger("userstats.sim")


def parse_start(value: str) -> int:
    if value == "now":
        return ev.to_us(datetime.now(UTC))
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--start: expected 'now' or an ISO-8601 time, got {value!r}"
        ) from None
    return ev.to_us(start if start.tzinfo else start.replace(tzinfo=UTC))


def nats_settings(url: str | None) -> NatsSettings:
    """NATS_URL, NATS_USER, ... as the services read them; --nats-url replaces the servers."""
    try:
        s = settings_load.load(None).nats
    except settings_load.ConfigError as exc:
        raise SystemExit(f"userstats-sim: configuration error: {exc}") from None
    return msgspec.structs.replace(s, servers=url.split(",")) if url else s


async def publish(sim: Simulator, count: int, rate: float, nats: NatsSettings) -> None:
    nc = await natsconn.connect(nats, "userstats-sim", wait=0)
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
    except (NatsError, OSError) as exc:
        raise natsconn.ConnectError(f"lost NATS after {sent} events: {natsconn.describe(exc, 0)}") from None
    finally:
        if nc.is_connected:
            await nc.drain()
        else:
            await nc.close()
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
        description="Publish deterministic kryten-robot style events (core NATS, like the bridge). "
        "The same --seed and --start give the same events.",
    )
    parser.add_argument("--count", type=int, default=10_000, help="events to produce (default 10000)")
    parser.add_argument("--rate", type=float, default=0, help="events per second; 0 = as fast as possible")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--start",
        type=parse_start,
        default="now",
        help="event time of the first event: 'now' (the default) or ISO-8601 (UTC unless it says)",
    )
    parser.add_argument("--users", type=int, default=200, help="users per channel")
    parser.add_argument(
        "--jsonl", type=Path, help="write {subject, envelope} lines here instead of publishing"
    )
    parser.add_argument(
        "--nats-url", default=None, help="NATS server(s) (default: $NATS_URL or nats://127.0.0.1:4222)"
    )
    parser.add_argument("--log-level", type=cli.log_level, default="INFO")
    args = parser.parse_args(argv)
    if args.count < 0 or args.users < 1 or args.rate < 0:
        parser.error("--count, --rate and --users must not be negative (--users at least 1)")
    cli.configure_logging(args.log_level)
    step = int(1_000_000 / args.rate) if args.rate > 0 else 20_000
    sim = Simulator(seed=args.seed, step_us=step, users_per_channel=args.users, start_us=args.start)
    if args.jsonl:
        write_jsonl(sim, args.count, args.jsonl)
        return
    nats = nats_settings(args.nats_url)
    try:
        asyncio.run(publish(sim, args.count, args.rate, nats))
    except KeyboardInterrupt:
        sys.exit(130)
    except natsconn.ConnectError as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
