"""The query benches' corpus, how each request picks its user or channel, and the cache hit ratio.

The corpus is the simulator's traffic over four channels of 600 users each (the fourth,
`cytu.be/RetroTV`, beside the simulator's three), so 100k events hold 2,173 users
who chatted. A request's user (or channel) is drawn from every item of the corpus:

- `uniform`: each item equally likely;
- `zipf`: item of rank k with weight 1/k**ZIPF_S (ranks are a fixed shuffle of the items, the
  same in every client process, so a few users are asked for far more often than the rest);
- a fixed subset of 50 users drawn uniformly is the old cached comparison (`bench.query_rate`
  cycled over 50 users, so nearly every reply came from the reply cache).

The cache hit ratio of a row is read from the replicas' Prometheus counters around it:
`userstats_query_cache_hits_total` over the sum of `userstats_query_requests_total`.
"""

from __future__ import annotations

import json
import random
import re
from bisect import bisect_right
from itertools import accumulate

from userstats.sim.generator import BRIDGE_PM_WEIGHT, DEFAULT_CHANNELS, Simulator

CHANNELS: tuple[tuple[str, str], ...] = (*DEFAULT_CHANNELS, ("cytu.be", "RetroTV"))
USERS_PER_CHANNEL = 600
ZIPF_S = 1.0
DRAWS = ("uniform", "zipf")
CACHED_USERS = 50  # the comparison row: the old bench's 50 users, which the cache holds
ZIPF_ORDER_SEED = 18

User = tuple[str, str, str]  # username, channel, domain


def simulator(seed: int = 1, **kwargs: int) -> Simulator:
    """The benches' traffic: the simulator's mix over CHANNELS, USERS_PER_CHANNEL each, with
    PMs at the rate a bridge sees them (BRIDGE_PM_WEIGHT)."""
    return Simulator(
        seed=seed,
        channels=CHANNELS,
        users_per_channel=USERS_PER_CHANNEL,
        pm_weight=BRIDGE_PM_WEIGHT,
        **kwargs,
    )


def corpus_users(events: int, seed: int = 1) -> list[User]:
    """(username, channel, domain) of every user who chatted in the first `events` events."""
    seen: dict[str, User] = {}
    for subject, data in simulator(seed).events(events):
        if subject.endswith(".chatmsg"):
            env = json.loads(data)
            name = env["payload"]["username"]
            seen.setdefault(name, (name, env["channel"], env["domain"]))
    return sorted(seen.values())


def corpus_channels() -> list[tuple[str, str]]:
    """(channel, domain) of every channel of the corpus."""
    return [(c, d) for d, c in CHANNELS]


class Draw:
    """Indices into `n` items, one per request: `uniform` or `zipf` (see the module doc)."""

    def __init__(self, kind: str, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("nothing to draw from")
        self.kind, self.n = kind, n
        self.rng = random.Random(seed)
        self.cum: list[float] | None = None
        if kind == "zipf":
            order = list(range(n))
            random.Random(ZIPF_ORDER_SEED).shuffle(order)
            weights = [0.0] * n
            for rank, item in enumerate(order):
                weights[item] = 1.0 / (rank + 1) ** ZIPF_S
            self.cum = list(accumulate(weights))
        elif kind != "uniform":
            raise ValueError(f"draw: expected one of {DRAWS}, got {kind!r}")

    def __call__(self) -> int:
        if self.cum is None:
            return self.rng.randrange(self.n)
        return min(self.n - 1, bisect_right(self.cum, self.rng.random() * self.cum[-1]))

    def probabilities(self) -> list[float]:
        """The chance of each index (what the draw should approach)."""
        if self.cum is None:
            return [1.0 / self.n] * self.n
        total = self.cum[-1]
        return [(b - a) / total for a, b in zip([0.0, *self.cum[:-1]], self.cum, strict=True)]


def draws(arg: str) -> list[str]:
    chosen = [d.strip() for d in arg.split(",") if d.strip()]
    for d in chosen:
        if d not in DRAWS:
            raise SystemExit(f"--draws: expected uniform and/or zipf, got {d!r}")
    return chosen


_HITS = re.compile(r"^userstats_query_cache_hits_total ([0-9.e+]+)$", re.M)
_REQUESTS = re.compile(r"^userstats_query_requests_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def counters(metrics_text: str) -> tuple[float, float] | None:
    """(cache hits, requests answered) from one replica's /metrics; None without the hit counter."""
    hits = _HITS.search(metrics_text)
    if hits is None:
        return None
    return float(hits.group(1)), sum(float(v) for v in _REQUESTS.findall(metrics_text))


def hit_ratio(before: list[str], after: list[str]) -> float | None:
    """Share of the requests answered between two scrapes of every replica that came from
    the reply cache; None if a replica has no hit counter or answered nothing."""
    hits = requests = 0.0
    for b, a in zip(before, after, strict=True):
        cb, ca = counters(b), counters(a)
        if cb is None or ca is None:
            return None
        hits += ca[0] - cb[0]
        requests += ca[1] - cb[1]
    return hits / requests if requests > 0 else None
