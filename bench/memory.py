"""Peak memory (VmHWM) of ingest and of a replica after 100k and 1M simulator events.

    python -m bench.memory [--events 100000,1000000]

For each size: a fresh stack, the events published, ingest started and waited for until its
checkpoint covers them, then a replica started and waited for; the peak resident set of each
process is read from /proc/<pid>/status.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from userstats.sim.generator import Simulator

from bench.common import report, stack
from testbed.harness import Service, connect, publish_all


def status_mb(svc: Service, field: str = "VmHWM") -> float:
    """A memory figure of the service's /proc status (VmHWM: peak resident; VmRSS: now), in MB."""
    assert svc.proc is not None
    for line in Path(f"/proc/{svc.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def peak_mb(svc: Service) -> float:
    return status_mb(svc, "VmHWM")


def wait_seq(svc: Service, key: str, target: int) -> None:
    while (svc.health()[1].get(key) or 0) < target:
        time.sleep(0.05)


def measure(events: int) -> dict[str, object]:
    with stack() as s:
        ingest = s.ingest()
        ingest.wait_healthy()
        ingest.stop()

        async def fill() -> int:
            nc = await connect(s.nats.url)
            try:
                return await publish_all(nc, list(Simulator(seed=1).events(events)))
            finally:
                await nc.close()

        last = asyncio.run(fill())
        ingest = s.ingest()
        ingest.wait_healthy()
        wait_seq(ingest, "checkpoint_seq", last)
        ingest_mb = peak_mb(ingest)
        query = s.query()
        query.wait_healthy(timeout=300)
        wait_seq(query, "as_of_seq", last)
        return {"events": events, "ingest_peak_rss_mb": ingest_mb, "replica_peak_rss_mb": peak_mb(query)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", default="100000,1000000")
    args = parser.parse_args()
    rows = [measure(int(n)) for n in args.events.split(",")]
    report("memory", rows, ["events", "ingest_peak_rss_mb", "replica_peak_rss_mb"])


if __name__ == "__main__":
    main()
