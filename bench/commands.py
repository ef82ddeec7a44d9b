"""Latency and throughput of every read command, against one and two replicas at rest.

    python -m bench.commands [--seconds 2] [--concurrency 1,16] [--replicas 1,2]

One replica with the simulator's 100k events; for each command a fixed request, sent by 1
and by 16 concurrent requesters (see bench.query_rate); the echo rows, measured in the same
run, are the transport's ceiling that the ratios refer to.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.common import report
from bench.query_rate import echo_ceiling, filled_stack, load

C, U = "420Grindhouse", "420GUser7"
REQUESTS: dict[str, dict[str, Any]] = {
    "user.stats": {"username": U, "channel": C},
    "user.profile": {"username": U, "channel": C},
    "user.messages": {"username": U},
    "user.activity": {"username": U},
    "user.kudos": {"username": U},
    "stats.global": {"channel": C},
    "channel.top_users": {"channel": C},
    "channel.population": {"channel": C},
    "channel.media_history": {"channel": C},
    "channel.watermarks": {"channel": C},
    "channel.movie_votes": {"channel": C},
    "channel.all_stats": {"channel": C},
    "leaderboard.messages": {},
    "leaderboard.kudos": {},
    "leaderboard.emotes": {},
    "leaderboard.all": {},
    "timeseries.messages": {"channel": C},
    "timeseries.kudos": {"channel": C},
    "system.ping": {},
    "system.health": {},
    "system.stats": {},
    "alias.list": {},
    "alias.get": {"username": U},
    "alias.find": {"alias": "nobody"},
}


def run(seconds: float, concurrencies: list[int], replica_counts: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with filled_stack(100_000) as (s, replicas):
        ceiling = echo_ceiling(s.nats.url, concurrencies, seconds)
        for c in concurrencies:
            rows.append(
                {
                    "command": "echo (ceiling)",
                    "replicas": 1,
                    "concurrency": c,
                    **ceiling[c],
                    "of_ceiling": "100%",
                }
            )
        for n in replica_counts:
            while len(replicas) < n:
                replicas.append(s.query())
                replicas[-1].wait_healthy()
            for command, params in REQUESTS.items():
                body = json.dumps({"command": command, **params}).encode()
                for c in concurrencies:
                    r = load(s.nats.url, "kryten.userstats.command", [body], c, seconds)
                    share = r["requests_per_s"] / ceiling[c]["requests_per_s"]
                    rows.append(
                        {
                            "command": command,
                            "replicas": n,
                            "concurrency": c,
                            **r,
                            "of_ceiling": f"{share:.0%}",
                        }
                    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--replicas", default="1,2")
    args = parser.parse_args()
    rows = run(
        args.seconds,
        [int(c) for c in args.concurrency.split(",")],
        [int(n) for n in args.replicas.split(",")],
    )
    report(
        "commands",
        rows,
        ["command", "replicas", "concurrency", "requests_per_s", "of_ceiling", "p50_ms", "p99_ms"],
    )


if __name__ == "__main__":
    main()
