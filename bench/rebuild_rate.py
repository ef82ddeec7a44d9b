"""Rebuild rate: N simulator events in the stream, `userstats-ingest rebuild --output FILE`.

    python -m bench.rebuild_rate [--events 1000000]

Timed by the rebuild itself (stream read from seq 1, projection, batched DuckDB writes,
final checkpoint), as printed by the command.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time

from userstats.ingest import rawstream
from userstats.shared.projection import Projector
from userstats.shared.settings import NatsSettings
from userstats.shared.stream import StreamReader
from userstats.shared.subjects import DEFAULT_STREAM, STREAM_SUBJECTS
from userstats.sim.generator import BRIDGE_PM_WEIGHT, Simulator

from bench.common import report, stack
from testbed.harness import connect, publish_all


async def fill(url: str, events: list[tuple[str, bytes]]) -> int:
    nc = await connect(url)
    try:
        return await publish_all(nc, events)
    finally:
        await nc.close()


async def read_raw(url: str, last: int) -> float:
    """Ceiling 1: the rebuild's fast reader (ingest/rawstream.py) over the whole stream (seconds)."""
    nc = await connect(url)
    n = 0

    async def count(batch: rawstream.Columns) -> None:
        nonlocal n
        n += len(batch[0])

    started = time.perf_counter()
    await rawstream.read_range(
        nc.jetstream(), NatsSettings(servers=[url]), DEFAULT_STREAM, STREAM_SUBJECTS, 1, last, count
    )
    seconds = time.perf_counter() - started
    await nc.close()
    assert n == last, (n, last)
    return seconds


async def read_only(url: str, last: int) -> float:
    """For comparison: the services' ordered-consumer read (nats-py) of the whole stream (seconds)."""
    nc = await connect(url)
    reader = StreamReader(nc.jetstream(), DEFAULT_STREAM, STREAM_SUBJECTS, 1, max_buffer=200_000)
    started = time.perf_counter()
    await reader.start()
    n = 0
    while n < last:
        await reader.wait(10)
        n += len(reader.take(10_000))
    seconds = time.perf_counter() - started
    await reader.stop()
    await nc.close()
    return seconds


def project_only(events: list[tuple[str, bytes]]) -> float:
    """Ceiling 2: the pure projection of the same events in memory, no I/O (seconds)."""
    proj = Projector()
    started = time.perf_counter()
    for seq, (subject, data) in enumerate(events, 1):
        proj.project(seq, subject, data, 0)
    return time.perf_counter() - started


def run(events: int) -> list[dict[str, object]]:
    with stack() as s:
        ingest = s.ingest()
        ingest.wait_healthy()
        ingest.stop()
        generated = list(Simulator(seed=1, pm_weight=BRIDGE_PM_WEIGHT).events(events))
        last = asyncio.run(fill(s.nats.url, generated))
        raw_s = asyncio.run(read_raw(s.nats.url, last))
        read_s = asyncio.run(read_only(s.nats.url, last))
        project_s = project_only(generated)
        out = subprocess.run(
            [sys.executable, "-m", "userstats.ingest", "rebuild", "--output", str(s.tmp / "rebuilt.duckdb")],
            env=s.env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        ).stdout
        m = re.search(
            r"rebuilt ([\d,]+) events to seq (\d+) in ([\d.]+) s "
            r"\(([\d,]+) events/s, fast reader\); (\d+) dead",
            out,
        )
        assert m, out
        seconds = float(m.group(3))
        return [
            {
                "stage": "ceiling: read the stream only (fast reader)",
                "events": last,
                "seconds": raw_s,
                "events_per_s": last / raw_s,
            },
            {
                "stage": "for comparison: read through nats-py",
                "events": last,
                "seconds": read_s,
                "events_per_s": last / read_s,
            },
            {
                "stage": "ceiling: project in memory only",
                "events": events,
                "seconds": project_s,
                "events_per_s": events / project_s,
            },
            {
                "stage": "rebuild (read + project + write)",
                "events": last,
                "seconds": seconds,
                "events_per_s": last / seconds,
                "dead_letters": int(m.group(5)),
            },
        ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    rows = run(args.events)
    ceiling = min(float(r["events_per_s"]) for r in rows if str(r["stage"]).startswith("ceiling"))  # type: ignore[arg-type]
    for r in rows:
        r["of_lower_ceiling"] = f"{float(r['events_per_s']) / ceiling:.0%}"  # type: ignore[arg-type]
    report(
        "rebuild_rate",
        rows,
        ["stage", "events", "seconds", "events_per_s", "of_lower_ceiling", "dead_letters"],
    )


if __name__ == "__main__":
    main()
