"""The same log gives the same tables however it is cut into batches or resumed."""

from __future__ import annotations

import pytest
from userstats.shared import events as ev
from userstats.sim.generator import Simulator

from tests.projection_helpers import Log, project


def sim_log(n: int, seed: int = 7) -> Log:
    log = Log()
    sim = Simulator(seed=seed, users_per_channel=40, step_us=100_000)
    for i, (subject, data) in enumerate(sim.events(n)):
        log.messages.append((subject, data, 0))
        if i % 997 == 0:  # some passage-of-time and poison messages, as in a real log
            log.messages.append(
                ("userstats.journal.tick", ev.encode(ev.Tick(timestamp=ev.from_us(sim.now_us))), 0)
            )
        if i % 1999 == 0:
            log.messages.append(("kryten.events.cytube.x.chatmsg", b"{broken", 0))
    return log


@pytest.fixture(scope="module")
def log() -> Log:
    return sim_log(12_000)


@pytest.fixture(scope="module")
def reference(log: Log) -> dict[str, list[tuple[object, ...]]]:
    return project(log).dump()


def test_reference_is_not_trivial(reference: dict[str, list[tuple[object, ...]]]) -> None:
    for table in (
        "users",
        "message_counts",
        "kudos_plusplus",
        "kudos_phrases",
        "emote_usage",
        "user_activity",
        "media_changes",
        "movie_votes",
        "population_snapshots",
        "open_sessions",
        "dead_letters",
    ):
        assert reference[table], f"{table} is empty: the simulator should exercise it"


@pytest.mark.parametrize("batch", [1, 97, 5000])
def test_batch_size_does_not_matter(
    log: Log, reference: dict[str, list[tuple[object, ...]]], batch: int
) -> None:
    if batch == 1:
        log = Log()
        log.messages = sim_log(300).messages
        assert project(log, batch=1).dump() == project(log).dump()
        return
    assert project(log, batch=batch).dump() == reference


@pytest.mark.parametrize("batch", [333, 2500])
def test_resuming_from_the_tables_gives_the_same_result(
    log: Log, reference: dict[str, list[tuple[object, ...]]], batch: int
) -> None:
    """What ingest does after a restart: load State from the tables, continue."""
    assert project(log, batch=batch, reload_every=1).dump() == reference


def test_case_twins_in_one_userlist_resolve_the_same_after_a_reload() -> None:
    """Two names differing only in case, first seen in the same event: the spelling kudos go to
    must not depend on the payload's order or on a restart in between (load_state sorts)."""
    log = Log()
    log.event("userlist", [{"name": "bob"}, {"name": "Bob"}, {"name": "carol"}])
    log.chat("carol", "thanks ++BOB")
    assert project(log, batch=1, reload_every=1).dump() == project(log).dump()
    assert project(log).rows("SELECT username FROM kudos_plusplus") == [("Bob",)]
