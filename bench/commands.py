"""Latency and throughput of every read command over many users and channels, against
`user.stats`, with one and two replicas at rest.

    python -m bench.commands [--events 100000] [--seconds 2] [--concurrency 1,16]
                             [--replicas 1,2] [--draws uniform,zipf]

The replicas hold N events of the benches' corpus (bench.sampling). Each request of a
per-user command is for a user drawn from every user of the corpus (uniformly, then Zipf as a
second row); of a per-channel command, for a channel drawn from the four; commands without
either have one fixed request (draw column empty). Requesters as in bench.query_rate; each row
shows its cache hit ratio, how many distinct users or channels were asked, its throughput as
a share of `user.stats` with the same draw, requesters and replicas, and its p99 against
theirs: the target is every command within 2x of `user.stats`. The echo rows, measured in
the same run, are the transport's ceiling; `user.stats` over 50 users is the old cached
measure, kept as a labelled comparison.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from userstats.shared.commands import COMMANDS

from bench import query_rate
from bench.common import report
from bench.query_rate import echo_ceiling, filled_stack, load
from bench.sampling import CACHED_USERS, DRAWS, User, corpus_channels, corpus_users, draws

# What each read command's requests vary over: "user" (username, with the user's channel
# and/or domain where the command takes them), "channel" (channel and domain), or "fixed".
USER, CHANNEL, FIXED = "user", "channel", "fixed"
VARIES: dict[str, str] = {
    "user.stats": USER,
    "user.profile": USER,
    "user.messages": USER,
    "user.activity": USER,
    "user.kudos": USER,
    "stats.global": CHANNEL,
    "channel.top_users": CHANNEL,
    "channel.population": CHANNEL,
    "channel.media_history": CHANNEL,
    "channel.watermarks": CHANNEL,
    "channel.movie_votes": CHANNEL,
    "channel.all_stats": CHANNEL,
    "channel.list": FIXED,
    "leaderboard.messages": CHANNEL,
    "leaderboard.kudos": FIXED,
    "leaderboard.emotes": FIXED,
    "leaderboard.all": FIXED,
    "timeseries.messages": CHANNEL,
    "timeseries.kudos": CHANNEL,
    "system.ping": FIXED,
    "system.health": FIXED,
    "system.stats": FIXED,
    "alias.list": FIXED,
    "alias.get": USER,
    "alias.find": USER,
}
# Per-user commands given the user's channel too (the others: the domain only, if they take it).
WITH_CHANNEL = {"user.stats", "user.profile"}
READS = [c for c in COMMANDS if not c.write]


def bodies(command: str, users: list[User], channels: list[tuple[str, str]]) -> list[bytes]:
    """The requests a row draws from: one per user, one per channel, or one."""
    fields = set(next(c for c in READS if c.name == command).params.__struct_fields__)
    kind = VARIES[command]
    out: list[dict[str, Any]] = []
    if kind == USER:
        for name, channel, domain in users:
            p: dict[str, Any] = {"alias": name} if command == "alias.find" else {"username": name}
            if command in WITH_CHANNEL:
                p["channel"] = channel
            if "domain" in fields:
                p["domain"] = domain
            out.append(p)
    elif kind == CHANNEL:
        out = [{"channel": c, "domain": d} for c, d in channels]
    else:
        out = [{}]
    return [json.dumps({"command": command, **p}).encode() for p in out]


def run(
    events: int, seconds: float, concurrencies: list[int], replica_counts: list[int], chosen: list[str]
) -> list[dict[str, Any]]:
    users, channels = corpus_users(events), corpus_channels()
    rows: list[dict[str, Any]] = []
    with filled_stack(events) as (s, replicas):
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
            cases: list[tuple[str, str, str, list[bytes]]] = []
            for cmd in READS:
                kind = VARIES[cmd.name]
                body = bodies(cmd.name, users, channels)
                over = {USER: f"{len(users):,} users", CHANNEL: f"{len(channels)} channels", FIXED: ""}[kind]
                cases += [(cmd.name, d, over, body) for d in (chosen if kind != FIXED else [""])]
                if cmd.name == "user.stats":
                    cases.append(
                        (
                            cmd.name,
                            "uniform",
                            f"{CACHED_USERS} users (cached comparison)",
                            body[:CACHED_USERS],
                        )
                    )
            for command, d, over, body in cases:
                for c in concurrencies:
                    r = load(
                        s.nats.url, "kryten.userstats.command", body, c, seconds, d or "uniform", replicas[:n]
                    )
                    share = r["requests_per_s"] / ceiling[c]["requests_per_s"]
                    rows.append(
                        {
                            "command": command,
                            "draw": d,
                            "over": over,
                            "replicas": n,
                            "concurrency": c,
                            **r,
                            "of_ceiling": f"{share:.0%}",
                        }
                    )
    against_user_stats(rows)
    return rows


def against_user_stats(rows: list[dict[str, Any]]) -> None:
    """Each row's throughput as a share of `user.stats` (same draw, or uniform for the fixed
    requests; same requesters and replicas) and its p99 as a multiple of theirs; `within_2x`
    when it has at least half the throughput and at most twice the p99."""
    base = {
        (r["draw"], r["replicas"], r["concurrency"]): r
        for r in rows
        if r["command"] == "user.stats" and "cached" not in r["over"]
    }
    for r in rows:
        ref = base.get((r.get("draw") or "uniform", r["replicas"], r["concurrency"]))
        if ref is None or r["command"] in ("user.stats", "echo (ceiling)"):
            continue
        rate = r["requests_per_s"] / ref["requests_per_s"]
        p99 = r["p99_ms"] / ref["p99_ms"]
        r["of_user_stats"] = f"{rate:.0%}"
        r["p99_vs_user_stats"] = f"{p99:.2f}x"
        r["within_2x"] = "yes" if rate >= 0.5 and p99 <= 2 else "no"


COLUMNS = [
    *query_rate.COLUMNS,
    "of_user_stats",
    "p99_vs_user_stats",
    "within_2x",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=2)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--draws", default=",".join(DRAWS), help="uniform and/or zipf")
    args = parser.parse_args()
    rows = run(
        args.events,
        args.seconds,
        [int(c) for c in args.concurrency.split(",")],
        [int(n) for n in args.replicas.split(",")],
        draws(args.draws),
    )
    report("commands", rows, COLUMNS)


if __name__ == "__main__":
    main()
