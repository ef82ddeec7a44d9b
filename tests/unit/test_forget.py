"""user.forget in the pure projection: rows gone from every table, the user never counted again,
the same whatever the batch size and across a reload; the record keeps only a hash."""

from __future__ import annotations

from typing import Any

import pytest
from userstats.shared import events as ev
from userstats.shared import forget
from userstats.shared.projection import text_digest

from tests.projection_helpers import T0, Log, Projection, project

OTHER = "420Other"


def _log() -> Log:
    log = Log()
    log.at(0).emotes(["PogChamp"]).media("Movie A")
    log.at(1).join("Alice").join("Bob").join(OTHER)
    log.at(2).chat("Alice", "hello PogChamp").chat("Bob", "Alice++ thanks alice").chat("Alice", "Bob++ +")
    log.at(3).journal(ev.AliasChange(T0, "add", username="Alice", alias="ally"))
    log.at(3).journal(ev.AliasChange(T0, "add", username="Bob", alias="alicefan"))
    log.at(4).afk("Alice", True).chat("Bob", "ally++").chat(OTHER, "hi all")
    log.at(5).event("pm", {"username": "alice", "msg": "psst", "to": "Bob"})
    log.at(6).journal(ev.Forget(T0, forget.user_hash("ALICE")))
    # after the forget: nothing of Alice is counted, whatever the spelling
    log.at(7).chat("alice", "back again").join("Alice").afk("Alice", False).chat("Bob", "Alice++")
    log.at(8).journal(ev.AliasChange(T0, "add", username="Alice", alias="ally2"))
    log.at(8).event("userlist", [{"name": "Alice", "meta": {}}, {"name": "Bob", "meta": {}}])
    log.at(9).chat(OTHER, "still here").leave("Alice")
    return log


def _names(p: Projection) -> str:
    dump: dict[str, Any] = p.dump()
    dump.pop("dead_letters")
    return repr(dump).lower()


@pytest.mark.parametrize("batch", [1, 3, 1_000_000])
def test_forget_removes_every_row_and_stops_counting(batch: int) -> None:
    p = project(_log(), batch=batch)
    assert "alice" not in _names(p).replace("alicefan", "")
    assert p.value("SELECT count(*) FROM users WHERE lower(username) = 'alice'") == 0
    assert p.rows("SELECT alias FROM user_aliases ORDER BY alias") == [("alicefan",)]
    assert p.rows("SELECT username FROM open_sessions ORDER BY username") == [("420Other",), ("Bob",)]
    assert p.value("SELECT count(*) FROM forgotten_users") == 1
    assert p.value("SELECT user_hash FROM forgotten_users") == forget.user_hash("alice")
    # Bob's and the other user's counts are theirs; kudos to Alice resolve to nobody after
    assert p.rows("SELECT username, message_count FROM message_counts ORDER BY 1") == [
        ("420Other", 2),
        ("Bob", 3),
    ]
    assert p.rows("SELECT username, kudos_count FROM kudos_plusplus ORDER BY 1") == [("Bob", 1)]
    forgotten = p.value("SELECT value FROM projection_counters WHERE name = 'events_forgotten'")
    assert forgotten == 5  # chat, addUser, setAFK, alias add, userLeave: every later event of hers


def test_forget_is_the_same_after_a_reload_at_every_batch() -> None:
    assert project(_log(), batch=2, reload_every=1).dump() == project(_log()).dump()


def test_the_recent_chat_keeps_no_line_of_or_about_the_user() -> None:
    lines = project(_log()).rows("SELECT lines FROM recent_chat")[0][0]
    assert "Alice" not in lines and "alice" not in lines.replace("alicefan", "")
    # an alias is not the name: another user's line with it stays (as the digest of its text)
    assert text_digest("ally++") in lines


def test_the_journal_event_carries_only_a_hash() -> None:
    data = ev.encode(ev.Forget(T0, forget.user_hash("Alice")))
    assert b"lice" not in data.lower()
    assert forget.user_hash("Alice") == forget.user_hash("aLiCe")


def test_events_of_a_forgotten_user_are_marked_for_deletion() -> None:
    p = Projection()
    log = _log()
    for seq, (subject, data, us) in enumerate(log.messages, 1):
        p.projector.project(seq, subject, data, us)
    seqs = p.projector.delta.forgotten_seqs
    names = [forget.event_names(log.messages[s - 1][0], log.messages[s - 1][1]) for s in seqs]
    assert names and all(n and n[0].lower() == "alice" for n in names)


def test_event_names() -> None:
    log = _log()
    found = {n for subject, data, _ in log.messages for n in forget.event_names(subject, data)}
    assert {"Alice", "alice", "Bob", "ally", OTHER} <= found


def test_a_dead_letter_naming_the_user_is_purged_and_marked_for_deletion() -> None:
    log = Log()
    log.raw(
        "kryten.events.cytube.x.chatmsg",
        b'{"event_name": "chatMsg", "payload": {"username": 5, "msg": "Alice"',
    )
    log.raw("kryten.events.cytube.x.chatmsg", b"not json, from Bob")
    p = project(log)
    assert p.value("SELECT count(*) FROM dead_letters") == 2
    log.journal(ev.Forget(T0, forget.user_hash("alice")))
    p = project(log)
    assert p.rows("SELECT raw FROM dead_letters") == [(b"not json, from Bob",)]
    subject, data, _ = log.messages[0]
    assert "Alice" in forget.event_names(subject, data)
