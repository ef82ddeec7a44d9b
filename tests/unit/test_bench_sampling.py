"""The query benches' sampling: draws over every user, the corpus, the hit ratio, the requests.

bench.query_rate and bench.commands pick each request's user or channel with
bench.sampling.Draw and read the cache hit ratio with bench.sampling.hit_ratio; a bug there
would flatter (or slander) every figure they print, so these check them against exact
expectations.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
from prometheus_client import generate_latest
from userstats.query.metrics import QueryMetrics
from userstats.shared import requests
from userstats.shared.commands import COMMANDS

from bench import commands, sampling
from bench.query_rate import channel_bodies, user_bodies

N = 2000
DRAWS = 200_000


def counts(kind: str, n: int = N, draws: int = DRAWS, seed: int = 3) -> Counter[int]:
    pick = sampling.Draw(kind, n, seed)
    return Counter(pick() for _ in range(draws))


def test_uniform_draw_reaches_every_user_evenly() -> None:
    c = counts("uniform")
    assert set(c) == set(range(N))  # every user asked (expected 100 each)
    expected = DRAWS / N
    chi2 = sum((c[i] - expected) ** 2 / expected for i in range(N))
    # chi-square with N-1 degrees of freedom: mean 1999, sd about 63
    assert abs(chi2 - (N - 1)) < 6 * math.sqrt(2 * (N - 1)), chi2


def test_zipf_draw_follows_its_weights_over_every_user() -> None:
    pick = sampling.Draw("zipf", N, 3)
    p = pick.probabilities()
    assert math.isclose(sum(p), 1.0)
    harmonic = sum(1 / k**sampling.ZIPF_S for k in range(1, N + 1))
    ranked = sorted(p, reverse=True)
    assert math.isclose(ranked[0], 1 / harmonic)  # rank 1
    assert math.isclose(ranked[-1], 1 / N**sampling.ZIPF_S / harmonic)  # every user can be drawn
    c = counts("zipf")
    top = sorted(range(N), key=lambda i: -p[i])[:10]
    for i in top:  # the most asked users, each within 5 sd of its expected count
        expected = DRAWS * p[i]
        assert abs(c[i] - expected) < 5 * math.sqrt(expected), (i, c[i], expected)
    assert len(c) > N // 2  # the tail is drawn too, not only the head
    assert c.most_common(1)[0][1] > 50 * DRAWS / N  # and skewed: far above the uniform share


def test_zipf_ranking_is_shared_by_the_client_processes_but_draws_are_not() -> None:
    a, b = sampling.Draw("zipf", N, 0), sampling.Draw("zipf", N, 1)
    assert a.probabilities() == b.probabilities()
    assert [a() for _ in range(50)] != [b() for _ in range(50)]
    # the head is not simply the first users in name order
    p = a.probabilities()
    assert max(range(N), key=lambda i: p[i]) != 0


def test_bad_draw_is_refused() -> None:
    with pytest.raises(ValueError, match="draw"):
        sampling.Draw("gauss", N, 0)
    with pytest.raises(ValueError):
        sampling.Draw("uniform", 0, 0)
    with pytest.raises(SystemExit):
        sampling.draws("uniform,pareto")


def test_the_corpus_has_at_least_2000_users_over_four_channels() -> None:
    users = sampling.corpus_users(100_000)
    assert len(users) >= 2000
    assert len({u for u, _, _ in users}) == len(users)
    homes = {(c, d) for _, c, d in users}
    assert homes == set(sampling.corpus_channels())
    assert len(homes) == 4
    # the traffic of the "+ 1000 events/s" rows chats as the same users
    later = set()
    for subject, data in sampling.simulator(seed=9).events(5000):
        if subject.endswith(".chatmsg"):
            later.add(json.loads(data)["payload"]["username"])
    assert len(later & {u for u, _, _ in users}) > 0.9 * len(later)


def scrape(hits: float, answered: dict[str, float]) -> str:
    """A replica's real /metrics text (its QueryMetrics registry) with these counts."""
    m = QueryMetrics(lambda: (0.0, True, True))
    for command, n in answered.items():
        m.requests.labels(command=command, outcome="ok").inc(n)
    m.cache_hits.inc(hits)
    return generate_latest(m.registry).decode()


def test_hit_ratio_from_two_scrapes_of_every_replica() -> None:
    before = [scrape(10, {"user.stats": 20}), scrape(0, {"system.ping": 5})]
    after = [
        scrape(10 + 300, {"user.stats": 20 + 400, "system.ping": 100}),
        scrape(0 + 100, {"system.ping": 5, "user.stats": 300}),
    ]
    assert sampling.counters(after[0]) == (310.0, 520.0)
    # (300 + 100) hits of (500 + 300) requests answered meanwhile
    assert sampling.hit_ratio(before, after) == pytest.approx(400 / 800)
    assert sampling.hit_ratio(before, before) is None  # nothing answered
    assert sampling.hit_ratio([before[0]], ["# no cache counter\n"]) is None


def test_every_read_command_is_benched_with_valid_requests_over_all_users_and_channels() -> None:
    reads = {c.name for c in COMMANDS if not c.write}
    assert set(commands.VARIES) == reads
    users = [("420GUser7", "420Grindhouse", "cytu.be"), ("AnimUser3", "AnimeClub", "cy.tube")]
    channels = sampling.corpus_channels()
    for name in reads:
        bodies = commands.bodies(name, users, channels)
        expected = {"user": len(users), "channel": len(channels), "fixed": 1}[commands.VARIES[name]]
        assert len(bodies) == expected, name
        for body in bodies:
            req = requests.parse(json.loads(body))  # as a replica validates it
            assert req.command == name
        if commands.VARIES[name] == "user":
            assert len(set(bodies)) == len(users), name
    parsed = [requests.parse(json.loads(b)).params for b in user_bodies(users)]
    assert [(p.username, p.channel, p.domain) for p in parsed] == users  # type: ignore[attr-defined]
    all_stats = [requests.parse(json.loads(b)).params for b in channel_bodies("channel.all_stats", channels)]
    assert [(p.channel, p.domain) for p in all_stats] == channels  # type: ignore[attr-defined]
