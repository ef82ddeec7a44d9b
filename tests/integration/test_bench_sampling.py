"""bench.query_rate's load against a real replica: requests drawn over every user asked, and
the cache hit ratio it reports agrees with what the reply cache must have done."""

from __future__ import annotations

from bench.query_rate import SUBJECT, filled_stack, load, user_bodies
from bench.sampling import corpus_users

EVENTS = 5000


def test_load_draws_every_user_and_reports_the_cache_hit_ratio() -> None:
    users = corpus_users(EVENTS)
    assert len(users) > 100
    some = users[:40]
    with filled_stack(EVENTS) as (s, replicas):
        first = load(s.nats.url, SUBJECT, user_bodies(some), 2, 3, "uniform", replicas)
        # every one of the 40 users was asked (hundreds of requests); each one's first request
        # was computed, so at most requests - 40 came from the cache
        assert first["asked"] == len(some)
        assert first["requests"] > 4 * len(some)
        assert first["cache_hit_ratio"] is not None
        assert first["cache_hit_ratio"] <= (first["requests"] - len(some)) / first["requests"]
        assert first["cache_hit_ratio"] > 0.5  # and the repeats were cached (nothing is written at rest)
        again = load(s.nats.url, SUBJECT, user_bodies(some), 2, 2, "zipf", replicas)
        assert again["cache_hit_ratio"] == 1.0  # every reply already cached
        assert 1 < again["asked"] <= len(some)
        # other users, never asked: a miss each time one comes up for the first time
        rest = users[len(some) :]
        fresh = load(s.nats.url, SUBJECT, user_bodies(rest), 2, 2, "uniform", replicas)
        assert fresh["cache_hit_ratio"] is not None
        misses = (1 - fresh["cache_hit_ratio"]) * fresh["requests"]
        assert round(misses) >= fresh["asked"]
        # no replica given: no ratio
        assert load(s.nats.url, SUBJECT, user_bodies(some), 1, 1)["cache_hit_ratio"] is None
