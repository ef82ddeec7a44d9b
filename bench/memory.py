"""Peak memory (VmHWM) of ingest and of a replica after 100k and 1M simulator events, and
after importing a kryten-userstats 0.7.1 database, with two floors beside them.

    python -m bench.memory [--events 0,100000,1000000] [--import-users 20000]

The floors: a bare Python process that imports what the service imports (its module, with
duckdb, nats-py, FastAPI, uvicorn, msgspec, prometheus-client) and runs one query on an empty
DuckDB connection, which is the least either process can take; and the services themselves on
an empty stream (`--events 0`). For each size: a fresh stack, the events published, ingest
started and waited for until its checkpoint covers them, then a replica started and waited for;
the peak resident set of each process is read from /proc/<pid>/status, and what stays resident
(VmRSS) 3 s later. The import row is bench.import_rate's run (20,000 users: the 263,561-row
database of `testbed/kus071.py`'s schema, `bench.import_rate.build`): ingest and a replica
running, `userstats-ingest import-sqlite`, the replica caught up and settled 3 s. Figures in
MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

from userstats.sim.generator import BRIDGE_PM_WEIGHT, Simulator

from bench import import_rate
from bench.common import peak_mb, report, stack, status_mb
from testbed.harness import Service, connect, publish_all


def wait_seq(svc: Service, key: str, target: int) -> None:
    while (svc.health()[1].get(key) or 0) < target:
        time.sleep(0.05)


# What a process of each service holds before it does anything: its imports and an empty
# DuckDB connection that has run one query (the library's code pages and its first buffers).
FLOOR = """
import duckdb, {module}
duckdb.connect(":memory:").execute("select 1").fetchall()
print([int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0])
"""


def floor_mb(module: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", FLOOR.format(module=module)], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip()) / 1024


def floors() -> dict[str, object]:
    ingest = floor_mb("userstats.ingest.service")
    replica = floor_mb("userstats.query.service")
    return {
        "corpus": "floor: Python, the service's imports, an empty DuckDB",
        "ingest_peak_rss_mb": ingest,
        "replica_peak_rss_mb": replica,
        "ingest_settled_rss_mb": ingest,
        "replica_settled_rss_mb": replica,
    }


def measure(events: int) -> dict[str, object]:
    with stack() as s:
        ingest = s.ingest()
        ingest.wait_healthy()
        ingest.stop()

        async def fill() -> int:
            nc = await connect(s.nats.url)
            try:
                return await publish_all(
                    nc, list(Simulator(seed=1, pm_weight=BRIDGE_PM_WEIGHT).events(events))
                )
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
        replica_mb = peak_mb(query)
        time.sleep(3)  # settled: what stays resident
        return {
            "corpus": f"{events:,} events",
            "events": events,
            "ingest_peak_rss_mb": ingest_mb,
            "replica_peak_rss_mb": replica_mb,
            "ingest_settled_rss_mb": status_mb(ingest, "VmRSS"),
            "replica_settled_rss_mb": status_mb(query, "VmRSS"),
        }


def imported(users: int) -> dict[str, object]:
    """bench.import_rate's run: peaks during the import and what stays resident after."""
    r = import_rate.run(users)[0]
    return {
        "corpus": f"import: {r['rows']:,} rows ({users:,} users)",
        "ingest_peak_rss_mb": r["ingest_peak_mb_after"],
        "replica_peak_rss_mb": r["replica_peak_mb_after"],
        "ingest_settled_rss_mb": r["ingest_rss_mb_settled"],
        "replica_settled_rss_mb": r["replica_rss_mb_settled"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", default="0,100000,1000000")
    parser.add_argument(
        "--import-users",
        type=int,
        default=20_000,
        help="users of the imported 0.7.1 database (0: no import row)",
    )
    args = parser.parse_args()
    rows = [floors(), *(measure(int(n)) for n in args.events.split(",") if n.strip())]
    if args.import_users:
        rows.append(imported(args.import_users))
    report(
        "memory",
        rows,
        [
            "corpus",
            "ingest_peak_rss_mb",
            "replica_peak_rss_mb",
            "ingest_settled_rss_mb",
            "replica_settled_rss_mb",
        ],
    )


if __name__ == "__main__":
    main()
