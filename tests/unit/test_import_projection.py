"""The projection of imported 0.7.1 history (journal "import" events): baselines, never doubled."""

from __future__ import annotations

from typing import Any

import pytest
from userstats.shared import events as ev
from userstats.shared.projection import IMPORTED_MEDIA_BASE

from tests.projection_helpers import CHANNEL, DOMAIN, T0, Log, project

US = 1_000_000
OLD = ev.to_us(T0) - 400 * 86_400 * US  # a year before the live events


def batch(table: str, source: str = "kryten-userstats", **rows: Any) -> ev.ImportBatch:
    return ev.ImportBatch(timestamp=T0, source=source, table=table, **rows)


def history(messages: int = 40, pms: int = 5) -> list[ev.ImportBatch]:
    return [
        batch("users", users=[ev.ImportUser("Carol", OLD, OLD + 10 * US), ev.ImportUser("dave", OLD, OLD)]),
        batch(
            "message_counts",
            counts=[
                ev.ImportCount("message", "Carol", CHANNEL, DOMAIN, "", messages),
                ev.ImportCount("message", "dave", CHANNEL, DOMAIN, "", 7),
            ],
        ),
        batch("pm_counts", counts=[ev.ImportCount("pm", "Carol", "", "", "", pms)]),
        batch("user_activity", counts=[ev.ImportCount("activity", "Carol", CHANNEL, DOMAIN, "", 3600, 3000)]),
        batch("emote_usage", counts=[ev.ImportCount("emote", "dave", CHANNEL, DOMAIN, "kappa", 9)]),
        batch(
            "media_changes",
            media=[
                ev.ImportMedia(1, CHANNEL, DOMAIN, OLD, "Sintel", "yt", "abc"),
                ev.ImportMedia(2, CHANNEL, DOMAIN, OLD + US, "Big Buck Bunny", "", ""),
            ],
        ),
        batch("population_snapshots", population=[ev.ImportPopulation(CHANNEL, DOMAIN, OLD, 12, 12)]),
        batch("movie_votes", votes=[ev.ImportVote(CHANNEL, DOMAIN, "Sintel", "yt", "abc", "dave", -1, OLD)]),
        batch("user_aliases", aliases=[ev.ImportAlias("Carol", "CC")]),
    ]


def live(log: Log) -> Log:
    log.at(0).join("Carol").chat("Carol", "hello").chat("bob", "thanks cc++").chat("bob", "lol dave")
    return log.media("Big Buck Bunny", mid="", mtype="")


def with_history(log: Log, batches: list[ev.ImportBatch]) -> Log:
    for b in batches:
        log.journal(b)
    return log


def count(p: Any, view: str, user: str, column: str) -> Any:
    return p.value(f"SELECT sum({column}) FROM {view} WHERE username = ?", user)


def statistics(p: Any) -> dict[str, Any]:
    """Every table but the bookkeeping (events counted, checkpoint), which a second import moves."""
    out = p.dump()
    out["counters"] = [r for r in out["counters"] if r[0] != "counter"]
    for name in ("projection_counters", "projection_checkpoint"):
        del out[name]
    return dict(out)


def test_imported_history_adds_to_live_counts() -> None:
    p = project(live(with_history(Log(), history())))
    assert count(p, "message_counts", "Carol", "message_count") == 41
    assert count(p, "pm_counts", "Carol", "pm_count") == 5
    assert p.rows("SELECT total_time_seconds, not_afk_time_seconds FROM user_activity") == [(3600, 3000)]
    assert count(p, "emote_usage", "dave", "usage_count") == 9
    assert count(p, "kudos_plusplus", "Carol", "kudos_count") == 1  # the imported alias resolved
    assert count(p, "kudos_phrases", "dave", "kudos_count") == 1  # dave exists only by import
    first, last = p.rows("SELECT first_seen_at, last_seen_at FROM users WHERE username = 'Carol'")[0]
    assert ev.to_us(first) == OLD and ev.to_us(last) == ev.to_us(T0)
    media = p.rows("SELECT seq, media_title FROM media_changes ORDER BY seq")
    assert [t for _, t in media] == ["Sintel", "Big Buck Bunny", "Big Buck Bunny"]
    assert media[0][0] < media[1][0] < 0 < media[2][0]  # imported rows sort before live ones
    # the imported row, and the live channel's first row at its first event
    assert p.rows("SELECT connected_count FROM population_snapshots ORDER BY timestamp") == [(12,), (1,)]
    assert p.rows("SELECT username, vote FROM movie_votes") == [("dave", -1)]


def test_importing_again_replaces_the_baseline_instead_of_adding() -> None:
    once = project(with_history(Log(), history()))
    twice = project(with_history(with_history(Log(), history()), history()))
    assert statistics(twice) == statistics(once)
    newer = project(with_history(with_history(Log(), history()), history(messages=45, pms=2)))
    assert count(newer, "message_counts", "Carol", "message_count") == 45
    assert count(newer, "pm_counts", "Carol", "pm_count") == 2
    other = project(with_history(with_history(Log(), history()), history()[1:2]))
    assert count(other, "message_counts", "Carol", "message_count") == 40
    second_source = [batch("message_counts", "other-bot", counts=[history()[1].counts[0]])]
    both = project(with_history(with_history(Log(), history()), second_source))
    assert count(both, "message_counts", "Carol", "message_count") == 80


@pytest.mark.parametrize("batch_size", [1, 3])
def test_resuming_from_the_tables_gives_the_same_result(batch_size: int) -> None:
    log = live(with_history(Log(), history()))
    with_history(log, history(messages=50))
    assert project(log, batch=batch_size, reload_every=1).dump() == project(log).dump()


def test_imported_media_does_not_suppress_a_live_change() -> None:
    """Only immediately repeated live changes are suppressed; history is older than any of them."""
    p = project(live(with_history(Log(), history())))
    assert p.value("SELECT count(*) FROM media_changes WHERE seq > 0") == 1


@pytest.mark.parametrize(
    "bad",
    [
        batch("message_counts", counts=[ev.ImportCount("message", "x", CHANNEL, DOMAIN, "", -1)]),
        batch("population_snapshots", population=[ev.ImportPopulation(CHANNEL, DOMAIN, -5, 1, 1)]),
        batch("movie_votes", votes=[ev.ImportVote(CHANNEL, DOMAIN, "t", "", "", "x", 2, OLD)]),
        batch(
            "users",
            users=[ev.ImportUser("ok", OLD, OLD), ev.ImportUser("late", OLD, 2**60)],
        ),
    ],
)
def test_an_invalid_batch_is_a_dead_letter_and_changes_nothing(bad: ev.ImportBatch) -> None:
    p = project(with_history(Log(), [bad]))
    assert p.value("SELECT count(*) FROM dead_letters") == 1
    assert p.value("SELECT count(*) FROM users") == 0
    assert p.value("SELECT count(*) FROM counters WHERE kind <> 'counter'") == 0
    assert IMPORTED_MEDIA_BASE < 0
