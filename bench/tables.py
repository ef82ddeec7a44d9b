"""The README's benchmark tables, as Markdown, from bench/results/*.json.

    python -m bench.tables [NAME ...]

NAME: stream_bytes, ingest_rate, rebuild_rate, freshness, leader_change, query_rate,
commands, http_rate, memory, import_rate, pm_deletes (default: all, in that order). The
`commands` table holds the rows of one replica with 16 requesters (every row is in its JSON).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from bench.common import RESULTS

Row = dict[str, Any]


def cell(v: Any) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def markdown(head: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def peaks(r: Row, who: str) -> str:
    before, after, settled = (r[f"{who}_{k}"] for k in ("peak_mb_before", "peak_mb_after", "rss_mb_settled"))
    return f"{before:.0f} / {after:.0f} / {settled:.0f}"


def every(r: Row) -> bool:
    return True


# name -> its columns (header, JSON key; a key "peaks:X" is X's three figures) and which rows
TABLES: dict[str, tuple[list[tuple[str, str]], Callable[[Row], bool]]] = {
    "stream_bytes": (
        [
            (k, k)
            for k in ("stream", "messages", "stored bytes", "bytes/event", "stored MB/day", "disk MB/day")
        ],
        every,
    ),
    "ingest_rate": (
        [
            ("nats", "nats"),
            ("stage", "stage"),
            ("events", "events"),
            ("seconds", "seconds"),
            ("events/s", "events_per_s"),
            ("of the read ceiling", "of_read_ceiling"),
        ],
        every,
    ),
    "rebuild_rate": (
        [
            ("stage", "stage"),
            ("events", "events"),
            ("seconds", "seconds"),
            ("events/s", "events_per_s"),
            ("of the lower ceiling", "of_lower_ceiling"),
        ],
        every,
    ),
    "freshness": (
        [
            ("nats", "nats"),
            ("probe", "probe"),
            ("offered events/s", "offered_events_per_s"),
            ("probes", "probes"),
            ("p50 ms", "p50_ms"),
            ("p99 ms", "p99_ms"),
            ("max ms", "max_ms"),
            ("floor p50 ms", "floor_p50_ms"),
            ("floor p99 ms", "floor_p99_ms"),
            ("p99 vs floor", "p99_vs_floor"),
        ],
        every,
    ),
    "leader_change": (
        [
            ("offered events/s", "offered_events_per_s"),
            ("change", "change"),
            ("leader", "leader"),
            ("new leader after s", "new_leader_after_s"),
            ("events sent", "events_sent"),
            ("events lost", "events_lost"),
            ("seconds of traffic lost", "lost_seconds_of_traffic"),
        ],
        every,
    ),
    "query_rate": (
        [
            ("command", "command"),
            ("draw", "draw"),
            ("over", "over"),
            ("replicas", "replicas"),
            ("requesters", "concurrency"),
            ("requests/s", "requests_per_s"),
            ("of echo ceiling", "of_ceiling"),
            ("p50 ms", "p50_ms"),
            ("p99 ms", "p99_ms"),
            ("cache hits", "cache_hits"),
        ],
        every,
    ),
    "commands": (
        [
            ("command", "command"),
            ("draw", "draw"),
            ("over", "over"),
            ("requests/s", "requests_per_s"),
            ("of user.stats", "of_user_stats"),
            ("p50 ms", "p50_ms"),
            ("p99 ms", "p99_ms"),
            ("p99 vs user.stats", "p99_vs_user_stats"),
            ("cache hits", "cache_hits"),
            ("within 2x", "within_2x"),
        ],
        lambda r: bool(r["replicas"] == 1 and r["concurrency"] == 16),
    ),
    "http_rate": (
        [
            ("request", "request"),
            ("events/s arriving", "events_per_s"),
            ("users", "users"),
            ("requests/s", "requests_per_s"),
            ("of NATS", "of_nats"),
            ("p50 ms", "p50_ms"),
            ("p99 ms", "p99_ms"),
            ("server p99 ms", "server_p99_ms"),
        ],
        every,
    ),
    "memory": (
        [
            ("corpus", "corpus"),
            ("ingest peak MiB", "ingest_peak_rss_mb"),
            ("replica peak MiB", "replica_peak_rss_mb"),
            ("ingest settled MiB", "ingest_settled_rss_mb"),
            ("replica settled MiB", "replica_settled_rss_mb"),
        ],
        every,
    ),
    "import_rate": (
        [
            ("users", "users"),
            ("rows", "rows"),
            ("file MB", "file_mb"),
            ("journal events", "journal_events"),
            ("seconds", "seconds"),
            ("rows/s", "rows_per_s"),
            ("ingest MiB: peak before / after / settled", "peaks:ingest"),
            ("replica MiB: peak before / after / settled", "peaks:replica"),
        ],
        every,
    ),
    "pm_deletes": (
        [
            (k, k)
            for k in (
                "row",
                "n",
                "mean ms",
                "p50 ms",
                "p99 ms",
                "caught up s",
                "last PM deleted s",
                "deletes/s",
            )
        ],
        every,
    ),
}


def value(r: Row, key: str) -> Any:
    return peaks(r, key.split(":")[1]) if key.startswith("peaks:") else r.get(key)


def results(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text())
    return data


def table(name: str, data: dict[str, Any] | None = None) -> str:
    columns, keep = TABLES[name]
    data = data or results(name)
    rows = [[value(r, key) for _, key in columns] for r in data["rows"] if keep(r)]
    return markdown([head for head, _ in columns], rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", metavar="NAME")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in TABLES]
    if unknown:
        parser.error(f"no such table: {', '.join(unknown)} (choose from {', '.join(TABLES)})")
    for name in args.names or TABLES:
        data = results(name)
        print(f"{name} ({data['machine']['date']}):\n\n{table(name, data)}\n")


if __name__ == "__main__":
    main()
