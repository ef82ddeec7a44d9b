"""The projection's rules (spec section 3), through real DuckDB tables.

Where userstats deliberately differs from 0.7.1 (DESIGN.md), the test name says so.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from userstats.shared import events as ev
from userstats.shared import schema

from tests.projection_helpers import CHANNEL, DOMAIN, T0, Log, Projection, counters, project, rows_of


def counts(p: Projection, table: str, value: str) -> dict[str, int]:
    return {u: n for u, n in p.rows(f"SELECT username, sum({value}) FROM {table} GROUP BY username")}


# --- users, messages, PMs ----------------------------------------------------------------


def test_users_first_and_last_seen_in_event_time() -> None:
    log = Log().at(0).join("alice").at(60).chat("alice", "hi").at(120).pm({"username": "alice", "msg": "x"})
    p = project(log)
    first, last = p.rows("SELECT first_seen_at, last_seen_at FROM users WHERE username = 'alice'")[0]
    assert first == T0.replace(tzinfo=None)
    assert (last - first).total_seconds() == 120


def test_message_and_pm_counts() -> None:
    log = Log().chat("alice", "a").chat("alice", "b", channel="Other").chat("bob", "c")
    log.pm({"username": "alice", "msg": "hello", "to": "Bot"})
    log.pm({"from": "carol", "msg": "untyped pm"})
    got = counters(log)
    assert sorted((user, channel, n) for (user, channel, *_), (n, _) in got[schema.MESSAGES].items()) == [
        ("alice", "420Grindhouse", 1),
        ("alice", "Other", 1),
        ("bob", "420Grindhouse", 1),
    ]
    assert sorted((user, n) for (user, *_), (n, _) in got[schema.PMS].items()) == [("alice", 1), ("carol", 1)]


def test_server_lines_are_counted_but_never_get_a_session() -> None:
    p = project(Log().chat("[server]", "alice joined (aliases: alice)"))
    assert p.table("message_counts") == [("[server]", CHANNEL, DOMAIN, 1)]
    assert p.table("open_sessions") == []


def test_shadow_muted_chat_is_not_counted_by_default() -> None:
    """Deliberately different: 0.7.1 counted meta.shadow messages."""
    log = Log().event(
        "chatMsg", {"username": "troll", "msg": "++bob #kappa", "meta": {"shadow": True}, "time": 5}
    )
    p = project(log)
    assert p.table("message_counts") == []
    assert p.value("SELECT value FROM projection_counters WHERE name = 'chat_shadow_ignored'") == 1


def test_shadow_muted_chat_counted_when_configured() -> None:
    log = Log().journal(
        ev.SettingsChanged(
            timestamp=T0, trigger_phrases=["lol"], count_shadow_muted=True, population_interval_seconds=300
        )
    )
    log.event("chatMsg", {"username": "troll", "msg": "hi", "meta": {"shadow": True}, "time": 5})
    assert project(log).table("message_counts") == [("troll", CHANNEL, DOMAIN, 1)]


def test_bridge_restart_backlog_is_not_counted_twice() -> None:
    """Deliberately different: 0.7.1 counted the replayed last 15 lines again."""
    log = Log()
    for i in range(20):
        log.at(i).chat(f"u{i % 3}", f"line {i}", time_ms=1_000 + i)
    for i in range(5, 20):  # the bridge restarts; CyTube replays its last 15 lines
        log.at(100 + i).chat(f"u{i % 3}", f"line {i}", time_ms=1_000 + i)
    log.at(200).chat("u0", "line 0", time_ms=9_999)  # same text, new time: a new message
    p = project(log)
    assert sum(counts(p, "message_counts", "message_count").values()) == 21
    assert p.value("SELECT value FROM projection_counters WHERE name = 'chat_backlog_duplicates'") == 15


def test_events_without_a_username_are_counted_apart() -> None:
    p = project(Log().event("chatMsg", {"msg": "who am i", "time": 1}).pm({"msg": "x"}))
    assert p.table("message_counts") == []
    assert p.table("pm_counts") == []
    assert (
        p.value("SELECT value FROM projection_counters WHERE name = 'events_without_username'") == 2
    )  # the chat line, and the PM (counted from its journal event)


def test_event_name_matching_is_case_insensitive_and_others_are_ignored() -> None:
    log = (
        Log()
        .event("CHATMSG", {"username": "a", "msg": "x", "time": 1})
        .event("usercount", 7)
        .event("mediaUpdate", {})
    )
    p = project(log)
    assert p.table("message_counts") == [("a", CHANNEL, DOMAIN, 1)]
    assert p.value("SELECT value FROM projection_counters WHERE name = 'events_ignored'") == 2
    assert p.value("SELECT value FROM projection_counters WHERE name = 'events_processed'") == 1


# --- kudos -----------------------------------------------------------------------------------


def kudos_log(*messages: tuple[str, str]) -> Log:
    log = Log().join("alice").join("Bob").join("carol")
    for sender, text in messages:
        log.chat(sender, text)
    return log


def kudos(log: Log, kind: str = schema.PLUSPLUS) -> dict[tuple[str, ...], int]:
    """(recipient, channel, domain) -> ++ kudos, or (recipient, phrase) -> phrase kudos, from
    the projection itself."""
    rows = counters(log).get(kind, {})
    if kind == schema.PHRASES:
        return {(user, phrase): n for (user, _, _, phrase, _), (n, _) in rows.items()}
    return {(user, channel, domain): n for (user, channel, domain, _, _), (n, _) in rows.items()}


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        pytest.param(
            kudos_log(("alice", "++bob thanks"), ("alice", "thanks ghost++"), ("carol", "BOB++")),
            {("Bob", CHANNEL, DOMAIN): 2},
            id="resolution, existence and stored spelling",
        ),
        pytest.param(  # deliberately different: 0.7.1 gave ++bob++ two kudos, and `++bob ++bob` two
            kudos_log(("alice", "++bob++"), ("alice", "++bob ++Bob"), ("alice", "++bob ++carol")),
            {("Bob", CHANNEL, DOMAIN): 3, ("carol", CHANNEL, DOMAIN): 1},
            id="once per target and message",
        ),
        pytest.param(
            kudos_log(("alice", "++dave")).join("dave").chat("alice", "++dave"),
            {("dave", CHANNEL, DOMAIN): 1},
            id="kudos to unknown users are dropped, not deferred",
        ),
    ],
)
def test_plusplus_kudos(log: Log, expected: dict[tuple[str, ...], int]) -> None:
    assert kudos(log) == expected


def test_self_kudos_blocked_including_own_alias() -> None:
    log = kudos_log()
    log.journal(ev.AliasChange(timestamp=T0, action="add", username="alice", alias="ali"))
    log.chat("alice", "++alice ++ALI lol alice").chat("Bob", "++ali")
    assert kudos(log) == {("alice", CHANNEL, DOMAIN): 1}
    assert kudos(log, schema.PHRASES) == {}


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        pytest.param(  # deliberately different: with `haha` in the list 0.7.1 counted `haha bob` twice
            kudos_log(("alice", "haha bob"), ("alice", "lol bob lol"), ("alice", "hahaha carol")),
            {("Bob", "haha"): 1, ("Bob", "lol"): 1, ("carol", "haha"): 1},
            id="once per target, phrase and message",
        ),
    ],
)
def test_phrase_kudos(log: Log, expected: dict[tuple[str, ...], int]) -> None:
    assert kudos(log, schema.PHRASES) == expected


def test_alias_resolution_for_kudos() -> None:
    log = kudos_log()
    log.journal(ev.AliasChange(timestamp=T0, action="add", username="Bob", alias="Bobby"))
    log.chat("alice", "thanks bobby++").chat("alice", "lol BOBBY")
    assert kudos(log) == {("Bob", CHANNEL, DOMAIN): 1}
    assert list(kudos(log, schema.PHRASES)) == [("Bob", "lol")]


def test_trigger_phrases_come_from_settings_events_at_their_position() -> None:
    log = kudos_log(("alice", "rofl bob"), ("alice", "lmao bob"))
    log.journal(
        ev.SettingsChanged(
            timestamp=T0, trigger_phrases=["LMAO"], count_shadow_muted=False, population_interval_seconds=300
        )
    )
    log.chat("alice", "rofl bob").chat("alice", "lmao bob")
    p = project(log)
    assert p.rows("SELECT phrase, kudos_count FROM kudos_phrases ORDER BY ALL") == [("lmao", 1), ("rofl", 1)]
    assert p.table("kudos_trigger_phrases") == [("lmao",)]


def test_hourly_kudos_series() -> None:
    log = kudos_log(("alice", "++bob lol carol")).at(3600).chat("alice", "++carol")
    p = project(log)
    assert [n for _, n in p.rows("SELECT hour, kudos_count FROM hourly_kudos ORDER BY hour")] == [2, 1]


# --- emotes -------------------------------------------------------------------------------


def test_emotes_per_channel_with_update_and_remove() -> None:
    """Deliberately different: 0.7.1 had one global set and ignored updateEmote/removeEmote."""
    log = Log().emotes(["#Kappa", "#Pog"]).emotes(["#Other"], channel="Elsewhere")
    log.chat("alice", "#kappa #KAPPA #other #pog")
    log.chat("bob", "#kappa #other", channel="Elsewhere")
    log.event("updateEmote", {"name": "#NewOne", "image": ""}).event("removeEmote", {"name": "#Pog"})
    log.chat("alice", "#newone #pog")
    rows = counters(log)[schema.EMOTES].items()
    assert sorted((user, channel, emote, n) for (user, channel, _, emote, _), (n, _) in rows) == [
        ("alice", CHANNEL, "kappa", 2),
        ("alice", CHANNEL, "newone", 1),
        ("alice", CHANNEL, "pog", 1),
        ("bob", "Elsewhere", "other", 1),
    ]


def test_emote_list_as_object_keys() -> None:
    log = Log().event("emoteList", {"#Kappa": {}, "LUL": {}}).chat("a", "#kappa #lul")
    assert counts(project(log), "emote_usage", "usage_count") == {"a": 2}


# --- sessions and activity -----------------------------------------------------------------


def activity(log: Log) -> list[tuple[str, int, int]]:
    """user_activity rows (username, total, not-AFK seconds), from the projection itself."""
    rows = counters(log).get(schema.ACTIVITY, {})
    return sorted((user, total, active) for (user, *_), (total, active) in rows.items())


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        pytest.param(
            Log().at(0).join("a").at(1800).leave("a"), [("a", 1800, 1800)], id="thirty-minute session"
        ),
        pytest.param(
            Log().at(0).join("a").at(600).afk("a", True).at(900).afk("a", False).at(1800).leave("a"),
            [("a", 1800, 1500)],
            id="afk in between",
        ),
        pytest.param(
            Log().at(0).join("a").at(600).afk("a", True).at(1800).leave("a"),
            [("a", 1800, 600)],
            id="afk until leave",
        ),
        pytest.param(
            Log().at(0).afk("a", True).at(100).leave("a"),
            [("a", 100, 0)],
            id="afk for unknown user opens a session",
        ),
        pytest.param(Log().leave("ghost"), [], id="leave without session does nothing"),
        pytest.param(  # deliberately different: 0.7.1 overwrote the session and lost its time
            Log().at(0).join("a").at(100).join("a").at(300).leave("a"),
            [("a", 300, 300)],
            id="duplicate join keeps the open session",
        ),
        pytest.param(
            Log().at(0).join("a").at(3600).leave("a").at(4000).join("a").at(5800).leave("a"),
            [("a", 5400, 5400)],
            id="sessions accumulate over visits",
        ),
    ],
)
def test_session_time(log: Log, expected: list[tuple[str, int, int]]) -> None:
    assert activity(log) == expected


def test_userlist_closes_sessions_of_absent_users_at_its_time() -> None:
    """Deliberately different: 0.7.1 ignored userlist and kept orphaned sessions forever."""
    log = Log().at(0).join("a").join("b").at(500)
    log.event("userlist", [{"name": "b", "meta": {"afk": True}}, {"name": "c", "meta": {"afk": False}}])
    log.at(800).leave("b").leave("c")
    p = project(log)
    assert p.rows(
        "SELECT username, total_time_seconds, not_afk_time_seconds FROM user_activity ORDER BY ALL"
    ) == [
        ("a", 500, 500),
        ("b", 800, 500),
        ("c", 300, 300),
    ]


def kv_state(minute: int, users: list[ev.UserPayload], emotes: list[str], title: str) -> ev.KvState:
    return ev.KvState(
        timestamp=T0.replace(minute=minute),
        domain=DOMAIN,
        channel=CHANNEL,
        users=users,
        emotes=emotes,
        current_media=ev.KvMedia(title=title, type="yt", id="x1"),
    )


def test_kv_state_fills_in_what_the_log_does_not_carry() -> None:
    """The stream was created after the bridge had joined: the log has no userlist, emote or
    media frame of the channel, so the bridge's KV fills them in, once."""
    log = Log().at(0).join("early").at(60)
    log.journal(
        kv_state(
            1,
            [
                ev.UserPayload(name="here", meta={"afk": True}),
                ev.UserPayload(name="early", meta={"afk": True}),
            ],
            ["#Kappa"],
            "Some_Film.mkv",
        )
    )
    log.at(120).chat("here", "#kappa great movie++")
    log.journal(kv_state(3, [ev.UserPayload(name="late")], ["#Other"], "Another.mkv"))  # filled already
    log.at(240).leave("early").leave("here")
    p = project(log)
    # `early` was open from the stream: the KV's afk flag does not touch it; `here` opens AFK
    # (chatting does not end AFK in userstats: CyTube sends setAFK/setUserMeta for that).
    assert p.rows(
        "SELECT username, total_time_seconds, not_afk_time_seconds FROM user_activity ORDER BY 1"
    ) == [("early", 240, 240), ("here", 180, 0)]
    assert p.table("open_sessions") == []  # the second KV event's `late` got no session
    assert p.rows("SELECT media_title, vote FROM movie_votes") == [("Some Film", 1)]
    assert p.table("media_changes") == []  # KV media sets the current media without logging
    assert counts(p, "emote_usage", "usage_count") == {"here": 1}
    assert p.table("channel_emotes") == [(DOMAIN, CHANNEL, "kappa")]
    assert p.table("channel_parts") == [(DOMAIN, CHANNEL, part) for part in ("emotes", "media", "roster")]
    filled = "SELECT value FROM projection_counters WHERE name = ?"
    assert (p.value(filled, "kvstate_parts_filled"), p.value(filled, "kvstate_parts_ignored")) == (3, 3)


def test_kv_state_never_overrides_what_the_stream_says() -> None:
    """The bridge's KV has no renameEmote handler and rewrites a user on setUserRank without
    meta.afk; after an ingest restart (which appends the KV state) the stream still wins."""
    log = Log().at(0).emotes(["#LUL", "#Kappa"]).media("Film_A.mkv", "a")
    log.event("userlist", [{"name": "bob", "rank": 1, "meta": {"afk": False}}, {"name": "eve", "meta": {}}])
    log.at(10).event("renameEmote", {"old": "#LUL", "name": "#LULW", "image": "x", "source": "s"})
    log.at(20).event("setUserMeta", {"name": "bob", "meta": {"afk": True, "muted": False}})
    log.event("setAFK", {"name": "bob", "afk": True})
    log.event("setUserRank", {"name": "bob", "rank": 2})
    log.at(30).journal(  # what kryten-robot 1.12.6 holds in KV at this point
        kv_state(
            0, [ev.UserPayload(name="bob", meta=None), ev.UserPayload(name="ghost")], ["#LUL"], "Old.mkv"
        )
    )
    log.at(40).chat("eve", "#LULW #LUL movie++")
    log.at(50).leave("bob").leave("eve")
    p = project(log)
    assert p.rows(
        "SELECT username, total_time_seconds, not_afk_time_seconds FROM user_activity ORDER BY 1"
    ) == [("bob", 50, 20), ("eve", 50, 50)]
    assert p.table("open_sessions") == []  # no session for the KV-only `ghost`
    assert p.rows("SELECT emote FROM emote_usage") == [("lulw",)]
    assert p.rows("SELECT emote FROM channel_emotes ORDER BY 1") == [("kappa",), ("lulw",)]
    assert p.rows("SELECT media_title FROM movie_votes") == [("Film A",)]
    ignored = "SELECT value FROM projection_counters WHERE name = 'kvstate_parts_ignored'"
    assert p.value(ignored) == 3


def test_kv_state_rule_survives_a_reload_of_the_state() -> None:
    """Which parts the log carries is projected state: reloaded from the tables, it decides alike."""
    log = Log().at(0).emotes(["#LUL"]).at(10)
    log.journal(kv_state(1, [ev.UserPayload(name="ghost")], ["#Other"], "X.mkv"))
    log.at(20).chat("a", "#LUL #Other")
    one_go = project(log).dump()
    assert Projection().run(log, batch=1, reload_every=1).dump() == one_go
    assert one_go["channel_emotes"] == [(DOMAIN, CHANNEL, "lul")]


def test_set_user_meta_applies_afk_and_ignores_mute_flags() -> None:
    """CyTube sends setUserMeta (and still the legacy setAFK) for an AFK change; a mute or
    shadow mute changes meta too, and leaves the session as it is: a muted user is present."""
    log = Log().at(0).join("a").join("troll")
    log.at(100).event("setUserMeta", {"name": "a", "meta": {"afk": True, "muted": False}})
    log.event("setAFK", {"name": "a", "afk": True})  # the legacy frame for the same change
    log.at(160).event("setUserMeta", {"name": "troll", "meta": {"afk": False, "muted": True, "smuted": True}})
    log.at(400).event("setUserMeta", {"name": "a", "meta": {"afk": False}})
    log.event("setUserMeta", {"name": "a", "meta": {"muted": True}})  # no afk key: nothing to apply
    log.at(500).leave("a").leave("troll")
    assert activity(log) == [("a", 500, 200), ("troll", 500, 500)]


def test_shadow_muted_users_count_as_present() -> None:
    """A shadow-muted user (meta.smuted, seen by a moderator bridge) is in the channel: sessions
    and population count them like anyone (as CyTube's own usercount does); only their chat
    (meta.shadow) is left out, by `count_shadow_muted`."""
    log = (
        Log()
        .at(10)
        .event(
            "userlist",
            [
                {"name": "a", "meta": {"afk": False}},
                {"name": "troll", "meta": {"afk": False, "smuted": True}},
            ],
        )
    )
    log.at(20).event("chatMsg", {"username": "troll", "msg": "spam", "meta": {"shadow": True}, "time": 7})
    log.at(310).tick()
    p = project(log)
    # the channel's first event (t=10) and the 5-minute boundary the tick crosses (t=300)
    assert p.rows("SELECT connected_count, chat_count FROM population_snapshots ORDER BY timestamp") == [
        (2, 2),
        (2, 2),
    ]
    assert p.rows("SELECT username FROM open_sessions ORDER BY 1") == [("a",), ("troll",)]
    assert p.table("message_counts") == []


def test_a_replayed_history_line_counts_once_at_its_envelope_time() -> None:
    """A line of CyTube's join backlog that the log has not seen (said before the stream existed,
    or while the bridge was down) counts once, at the time the bridge published it: every
    figure uses the bridge's clock, so a line never lands before the join that precedes it.
    Its payload `time` (CyTube's clock, here two hours earlier) only identifies a replay."""
    said_ms = ev.to_us(T0) // 1000 - 2 * 3600 * 1000
    log = Log().at(0).chat("a", "said long ago ++b", time_ms=said_ms).join("b")
    log.at(3600).chat("a", "said long ago ++b", time_ms=said_ms)  # the same line, replayed again
    p = project(log)
    assert p.rows("SELECT hour, message_count FROM hourly_messages") == [(T0.replace(tzinfo=None), 1)]
    first = p.value("SELECT first_seen_at FROM users WHERE username = 'a'")
    assert first == T0.replace(tzinfo=None)


# --- population -----------------------------------------------------------------------------


def test_population_rows_every_five_minutes_with_zero_and_afk() -> None:
    """Deliberately different: zero rows are recorded and chat_count excludes AFK users."""
    log = Log().at(10).join("a").join("b").at(200).afk("b", True).at(310).leave("a").leave("b")
    log.at(650).tick()
    p = project(log)
    rows = [
        (ts.minute, ts.second, c, k)
        for ts, c, k in p.rows(
            "SELECT timestamp, connected_count, chat_count FROM population_snapshots ORDER BY 1"
        )
    ]
    assert rows == [(0, 10, 1, 1), (5, 0, 2, 1), (10, 0, 0, 0)]  # the first at the first event


@pytest.mark.parametrize("batch", [1, 2, 1000])
def test_a_channel_has_a_population_row_from_its_first_event(batch: int) -> None:
    """Not only from the next interval boundary: the row at the first event holds the
    population after it (a user list, the bridge's KV state, or a chat line)."""
    users = [{"name": n, "meta": {"afk": n == "c"}} for n in ("a", "b", "c")]
    log = Log().at(61).event("userlist", users).join("d").at(70).chat("x", "hi", channel="Other")
    log.at(75).journal(
        ev.KvState(
            timestamp=T0.replace(second=75 - 60, minute=1),
            domain=DOMAIN,
            channel="Third",
            users=[ev.UserPayload(name="k")],
        )
    )
    log.at(80).join("e").at(301).chat("a", "hello")
    p = project(log, batch=batch, reload_every=1)
    rows = p.rows(
        "SELECT channel, minute(timestamp), second(timestamp), connected_count, chat_count "
        "FROM population_snapshots ORDER BY timestamp, channel"
    )
    assert rows == [
        (CHANNEL, 1, 1, 3, 2),  # after the user list, before d joined
        ("Other", 1, 10, 1, 1),
        ("Third", 1, 15, 1, 1),
        (CHANNEL, 5, 0, 5, 4),  # the boundary row as before
    ]


def test_ticks_fill_quiet_periods_for_every_known_channel() -> None:
    log = Log().at(1).join("a").join("z", channel="Other").at(1800).tick()
    p = project(log)
    assert p.value("SELECT count(*) FROM population_snapshots WHERE channel = ?", CHANNEL) == 7  # 6 + first
    assert p.value("SELECT count(*) FROM population_snapshots WHERE channel = 'Other'") == 7
    assert p.value("SELECT min(connected_count) FROM population_snapshots") == 1


# --- media and votes ------------------------------------------------------------------------


def test_media_log_suppresses_only_immediate_repeats() -> None:
    log = Log().media("A.mkv", "1").media("A.mkv", "1").media("B.mp4", "2").media("A.mkv", "1")
    p = project(log)
    assert [t for (t,) in p.rows("SELECT media_title FROM media_changes ORDER BY seq")] == ["A", "B", "A"]


def test_numeric_media_id_is_kept() -> None:
    """Deliberately different: 0.7.1 dropped changeMedia whose id was a number."""
    p = project(Log().event("changeMedia", {"id": 12345, "title": "x", "type": "fi"}))
    assert p.rows("SELECT media_id FROM media_changes") == [("12345",)]


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        pytest.param(
            Log()
            .chat("a", "movie++")
            .media("Film.mkv", "9")
            .chat("a", "movie++")
            .chat("b", "film-")
            .chat("a", "movie--")
            .chat("c", "movie+-"),
            [("a", -1), ("b", -1)],
            id="last one wins per user and title",
        ),
        pytest.param(
            Log().media("X.mkv").chat("a", "movie++", channel="Other"), [], id="per domain and channel"
        ),
    ],
)
def test_votes(log: Log, expected: list[tuple[str, int]]) -> None:
    """(username, vote) of movie_votes, from the projection itself."""
    votes = rows_of(log, schema.MOVIE_VOTES.name)
    assert [(user, vote) for _, _, _, user, _, _, vote, _ in votes] == expected


# --- aliases -----------------------------------------------------------------------------------


def test_alias_journal_events() -> None:
    log = Log()
    for action, user, alias, new in [
        ("add", "Bob", "Bobby", ""),
        ("add", "carol", "bobby", ""),  # taken: ignored
        ("update", "Bob", "bobby", "bobster"),
        ("add", "carol", "cc", ""),
        ("delete", "carol", "cc", ""),
    ]:
        log.journal(ev.AliasChange(timestamp=T0, action=action, username=user, alias=alias, new_alias=new))  # type: ignore[arg-type]
    p = project(log)
    assert p.rows("SELECT username, alias FROM user_aliases") == [("Bob", "bobster")]


# --- robustness ----------------------------------------------------------------------------------


def test_poison_messages_become_dead_letters_and_projection_continues() -> None:
    log = Log().chat("a", "before")
    log.raw("kryten.events.cytube.x.chatmsg", b"\xff not json")
    log.raw(
        "kryten.events.cytube.x.chatmsg", b'{"event_name": "chatMsg", "payload": {}}'
    )  # no channel/domain
    log.event("chatMsg", {"username": 42, "msg": "wrong type"})
    log.raw("userstats.journal.tick", b'{"type": "nope"}')
    log.chat("a", "after")
    p = project(log)
    assert p.table("message_counts") == [("a", CHANNEL, DOMAIN, 2)]
    dead = p.rows("SELECT seq, subject FROM dead_letters ORDER BY seq")
    assert [s for s, _ in dead] == [2, 3, 4, 5]
    assert p.value("SELECT raw FROM dead_letters WHERE seq = 2") == b"\xff not json"
    # paths name the place in the whole envelope, not in its payload
    assert p.value("SELECT error FROM dead_letters WHERE seq = 4") == (
        "Expected `str | null`, got `int` - at `$.payload.username`"
    )


def test_missing_envelope_timestamp_uses_the_stream_time() -> None:
    log = Log().at(42)
    data = ev.encode(
        {"event_name": "addUser", "payload": {"name": "a"}, "channel": CHANNEL, "domain": DOMAIN}
    )
    log.raw("kryten.events.cytube.x.adduser", data)
    p = project(log)
    first = p.value("SELECT first_seen_at FROM users")
    assert first == datetime(2025, 12, 5, 17, 0, 42)
