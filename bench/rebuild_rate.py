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

from bench.common import report, stack
from sim.generator import Simulator
from tests.harness import connect, publish_all


async def fill(url: str, events: int) -> int:
    nc = await connect(url)
    try:
        return await publish_all(nc, list(Simulator(seed=1).events(events)))
    finally:
        await nc.close()


def run(events: int) -> list[dict[str, object]]:
    with stack() as s:
        ingest = s.ingest()
        ingest.wait_healthy()
        ingest.stop()
        last = asyncio.run(fill(s.nats.url, events))
        out = subprocess.run(
            [sys.executable, "-m", "ingest", "rebuild", "--output", str(s.tmp / "rebuilt.duckdb")],
            env=s.env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        ).stdout
        m = re.search(
            r"rebuilt ([\d,]+) events to seq (\d+) in ([\d.]+) s \(([\d,]+) events/s\); (\d+) dead", out
        )
        assert m, out
        seconds = float(m.group(3))
        return [
            {
                "events": last,
                "seconds": seconds,
                "events_per_s": last / seconds,
                "dead_letters": int(m.group(5)),
            }
        ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    report("rebuild_rate", run(args.events), ["events", "seconds", "events_per_s", "dead_letters"])


if __name__ == "__main__":
    main()
