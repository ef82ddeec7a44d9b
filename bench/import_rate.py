"""Import rate: a large kryten-userstats 0.7.1 database through `userstats-ingest import-sqlite`.

    python -m bench.import_rate [--users 20000]

The file gets 0.7.1's own schema (its code creates the tables) and synthetic rows written
with plain SQL: per user about 3 message_counts, 1 pm_counts, 2 kudos, 4 emote_usage and
1 user_activity rows, plus media changes, population snapshots and votes. Timed: the whole
command with ingest running (read, publish, wait until ingest has projected it all). Also
reported: the peak resident set of ingest and of a replica before and after the import, and
what stays resident 3 s after the replica caught up.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import peak_mb, report, stack, status_mb
from testbed.harness import Service, caught_up, connect
from testbed.kus071 import Reference


def build(path: Path, users: int, seed: int = 1) -> int:
    """A 0.7.1 database with about 12 rows per user; returns the row count."""
    Reference(path).db._create_tables()
    rng = random.Random(seed)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)

    def ts(i: int) -> str:
        return (t0 + timedelta(seconds=i * 37)).isoformat()

    names = [f"user{i}" for i in range(users)]
    channels = [f"chan{i}" for i in range(5)]
    emotes = [f"emote{i}" for i in range(300)]
    con = sqlite3.connect(path)
    ch, pick = "cytu.be", rng.choice

    def insert(table: str, columns: str, rows: list[tuple[object, ...]]) -> None:
        marks = ", ".join("?" * len(rows[0]))
        con.executemany(f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})", rows)

    with con:
        insert(
            "users",
            "username, first_seen_at, last_seen_at",
            [(n, ts(i), ts(i + 99)) for i, n in enumerate(names)],
        )
        insert(
            "message_counts",
            "username, channel, domain, message_count",
            [(n, pick(channels), ch, rng.randint(1, 5000)) for n in names for _ in range(3)],
        )
        insert("pm_counts", "username, pm_count", [(n, rng.randint(1, 50)) for n in names])
        insert(
            "kudos_plusplus",
            "username, channel, domain, kudos_count",
            [(n, pick(channels), ch, rng.randint(1, 40)) for n in names],
        )
        insert(
            "kudos_phrases",
            "username, channel, domain, phrase, kudos_count",
            [(n, pick(channels), ch, pick(("lol", "haha")), rng.randint(1, 40)) for n in names],
        )
        insert(
            "emote_usage",
            "username, channel, domain, emote, usage_count",
            [(n, pick(channels), ch, pick(emotes), rng.randint(1, 99)) for n in names for _ in range(4)],
        )
        insert(
            "user_activity",
            "username, channel, domain, total_time_seconds, not_afk_time_seconds",
            [(n, pick(channels), ch, 7200, 6000) for n in names],
        )
        insert(
            "media_changes",
            "channel, domain, timestamp, media_title, media_type, media_id",
            [(pick(channels), ch, ts(i), f"Title {i % 700}", "yt", f"v{i}") for i in range(users // 2)],
        )
        insert(
            "population_snapshots",
            "channel, domain, timestamp, connected_count, chat_count",
            [(c, ch, ts(i * 8), rng.randint(0, 80), 0) for i in range(users // 2) for c in channels[:2]],
        )
        insert(
            "movie_votes",
            "channel, domain, media_title, media_type, media_id, username, vote, timestamp",
            [
                (pick(channels), ch, f"Title {i % 700}", "yt", "x", pick(names), pick((1, -1)), ts(i))
                for i in range(users // 4)
            ],
        )
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    total = sum(
        con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables if t != "sqlite_sequence"
    )
    con.close()
    return int(total)


def run(users: int) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="userstats-import-") as tmp:
        path = Path(tmp) / "userstats.db"
        rows = build(path, users)
        size_mb = path.stat().st_size / 1e6
        with stack() as s:
            ingest = s.ingest()
            ingest.wait_healthy()
            replica = s.query()
            replica.wait_healthy()
            before = peak_mb(ingest), peak_mb(replica)
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "userstats.ingest", "import-sqlite", "--wait", "600", str(path)],
                env=s.env(),
                capture_output=True,
                text=True,
                check=True,
                cwd=s.tmp,
            ).stdout
            seconds = time.perf_counter() - started
            asyncio.run(replica_caught_up(s.nats.url, replica))
            after = peak_mb(ingest), peak_mb(replica)
            time.sleep(3)  # settled: what stays resident
            settled = status_mb(ingest, "VmRSS"), status_mb(replica, "VmRSS")
        match = re.search(r"(\d+) journal event\(s\) appended", out)
        events = int(match.group(1)) if match else 0
        if "ingest has projected the import" not in out:
            raise SystemExit(f"import did not finish:\n{out}")
    return [
        {
            "users": users,
            "rows": rows,
            "file_mb": round(size_mb, 1),
            "journal_events": events,
            "seconds": round(seconds, 1),
            "rows_per_s": rows / seconds,
            "ingest_peak_mb_before": before[0],
            "ingest_peak_mb_after": after[0],
            "replica_peak_mb_before": before[1],
            "replica_peak_mb_after": after[1],
            "ingest_rss_mb_settled": settled[0],
            "replica_rss_mb_settled": settled[1],
        }
    ]


async def replica_caught_up(url: str, replica: Service) -> None:
    nc = await connect(url)
    try:
        await caught_up(nc, replica)
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    args = parser.parse_args()
    report(
        "import_rate",
        run(args.users),
        [
            "users",
            "rows",
            "file_mb",
            "journal_events",
            "seconds",
            "rows_per_s",
            "ingest_peak_mb_before",
            "ingest_peak_mb_after",
            "replica_peak_mb_before",
            "replica_peak_mb_after",
            "ingest_rss_mb_settled",
            "replica_rss_mb_settled",
        ],
    )


if __name__ == "__main__":
    main()
