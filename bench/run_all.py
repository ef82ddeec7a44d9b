"""`make bench`: every benchmark with its default arguments, one after the other (about 35 minutes).

    python -m bench.run_all [--smoke]

`--smoke`: each at a small size instead (a few minutes), to check that they all run end to end
and print sensible tables; their JSON goes to BENCH_RESULTS_DIR (default: a temp dir), so
bench/results/ keeps the measured figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
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
    "bench.pm_deletes",
]
SMOKE = {
    "bench.ingest_rate": ["--events", "20000", "--e2e", "20000", "--nats", "single"],
    "bench.rebuild_rate": ["--events", "20000"],
    "bench.freshness": ["--rates", "1000,10000", "--seconds", "3", "--nats", "single"],
    "bench.query_rate": ["--events", "20000", "--seconds", "2", "--replicas", "1"],
    "bench.commands": ["--events", "20000", "--seconds", "1", "--replicas", "1", "--concurrency", "16"],
    "bench.memory": ["--events", "20000", "--import-users", "2000"],
    "bench.import_rate": ["--users", "2000"],
    "bench.http_rate": ["--events", "20000", "--seconds", "3"],
    "bench.stream_bytes": ["--hours", "2"],
    "bench.pm_deletes": ["--messages", "5000", "--deletes", "50", "--backlog", "5000"],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="small sizes, JSON outside bench/results/")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.smoke:
        env.setdefault("BENCH_RESULTS_DIR", tempfile.mkdtemp(prefix="userstats-bench-smoke-"))
        print(f"smoke run: JSON in {env['BENCH_RESULTS_DIR']}", flush=True)
    failed = []
    for name in BENCHMARKS:
        print(f"\n## {name}\n", flush=True)
        started = time.monotonic()
        extra = SMOKE[name] if args.smoke else []
        code = subprocess.run([sys.executable, "-m", name, *extra], check=False, env=env).returncode
        print(f"({name}: {time.monotonic() - started:.0f} s, exit {code})", flush=True)
        if code:
            failed.append(name)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
