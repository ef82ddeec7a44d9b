"""`make bench`: every benchmark with its default arguments, one after the other (about 15 minutes)."""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = [
    "bench.ingest_rate",
    "bench.rebuild_rate",
    "bench.freshness",
    "bench.query_rate",
    "bench.commands",
    "bench.memory",
    "bench.import_rate",
    "bench.http_rate",
    "bench.stream_bytes",
]


def main() -> None:
    failed = []
    for name in BENCHMARKS:
        print(f"\n## {name}\n", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, "-m", name], check=False).returncode
        print(f"({name}: {time.monotonic() - started:.0f} s, exit {code})", flush=True)
        if code:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
