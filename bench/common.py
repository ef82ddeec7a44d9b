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

from tests.harness import NatsServer, Stack

RESULTS = Path(__file__).parent / "results"


@contextmanager
def stack() -> Iterator[Stack]:
    """nats-server on a free loopback port with a temp store, plus whatever the bench starts."""
    tmp = Path(tempfile.mkdtemp(prefix="userstats-bench-"))
    server = NatsServer(tmp / "nats-store")
    server.start()
    s = Stack(tmp, server)
    try:
        yield s
    finally:
        s.stop_all()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


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
    RESULTS.mkdir(exist_ok=True)
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
