"""What every benchmark shares: a private stack of real processes, timing, and reporting."""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testbed.harness import NatsCluster, NatsServer, Service, Stack

# BENCH_RESULTS_DIR: write the JSON elsewhere (smoke runs at small sizes keep bench/results/ as measured)
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")


TOPOLOGIES = ("single", "cluster")
TOPOLOGY_NAMES = {"single": "1 node", "cluster": "3 nodes, R3"}


@contextmanager
def stack(topology: str = "single") -> Iterator[Stack]:
    """nats-server on a free loopback port with a temp store, plus whatever the bench starts;
    `cluster`: three nodes joined by routes instead (call `await ready(s)` before use, and
    start services with `**replication(s)`)."""
    tmp = Path(tempfile.mkdtemp(prefix="userstats-bench-"))
    server: NatsServer | NatsCluster = (
        NatsCluster(tmp) if topology == "cluster" else NatsServer(tmp / "nats-store")
    )
    server.start()
    # The product's snapshot interval (2 s), not the tests' 0.3 s: a snapshot copies the whole
    # database, and three a second took CPU from the replica under every "with writes" row.
    s = Stack(tmp, server, snapshot_interval=None)
    try:
        yield s
    finally:
        s.stop_all()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def ready(s: Stack) -> None:
    """Wait for a cluster's JetStream (a single server is ready once started)."""
    if isinstance(s.nats, NatsCluster):
        await s.nats.ready()


def replication(s: Stack) -> dict[str, str]:
    """Service environment for the stack: R3 stores on a cluster."""
    cluster = {"USERSTATS_REPLICAS": "3"}
    return cluster if isinstance(s.nats, NatsCluster) else {}


def topologies(arg: str) -> list[str]:
    chosen = [t.strip() for t in arg.split(",") if t.strip()]
    for t in chosen:
        if t not in TOPOLOGIES:
            raise SystemExit(f"--nats: expected single and/or cluster, got {t!r}")
    return chosen


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def status_mb(svc: Service, field: str = "VmHWM") -> float:
    """A memory figure of the service's /proc status (VmHWM: peak resident; VmRSS: now), in MB."""
    assert svc.proc is not None
    for line in Path(f"/proc/{svc.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


def peak_mb(svc: Service) -> float:
    return status_mb(svc, "VmHWM")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def report(name: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print a Markdown table and write bench/results/<name>.json."""
    widths = {c: max(len(c), *(len(fmt(r.get(c))) for r in rows)) for c in columns}
    print("| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c)).ljust(widths[c]) for c in columns) + " |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"benchmark": name, "machine": machine(), "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
