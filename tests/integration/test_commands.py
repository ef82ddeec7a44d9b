"""Issue 4: every command of spec 4.2 and the seed API, against a known event log, exact values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.aio.client import Client

from testbed.harness import envelope, publish_all, request
from tests.integration.knownlog import HOUR, G, known_log, ts, us


async def ask(nc: Client, command: str, **params: Any) -> Any:
    reply = await request(nc, {"command": command, **params})
    assert reply["service"] == "userstats" and reply["command"] == command
    assert reply["success"] is True, reply
    assert isinstance(reply["as_of_seq"], int) and reply["as_of_seq"] > 0
    assert list(reply)[:4] == ["service", "command", "success", "data"]  # the spec's key order
    return reply["data"]


async def test_user_commands(nc: Client) -> None:
    assert await ask(nc, "user.stats", username="nightowl", channel=G) == {
        "username": "NightOwl",
        "messages": 3,
        "all_messages": [{"channel": G, "count": 3}, {"channel": "Other", "count": 1}],
        "pms": 1,
        "kudos_plusplus": 0,
        "kudos_phrases": [{"phrase": "lol", "count": 1}],
        "emotes": [{"emote": "kappa", "count": 1}],
        "activity": None,
        "aliases": [],  # beyond 0.7.1, for kryten-shell
        "first_seen": ts(1),
        "last_seen": ts(701),
    }
    reel = await ask(nc, "user.stats", username="ReelTalk")
    assert reel["messages"] == 0 and reel["kudos_phrases"] == [{"phrase": "haha", "count": 1}]
    assert reel["emotes"] == [{"emote": "kappa", "count": 2}]
    assert reel["all_activity"] == [{"channel": G, "total_time_seconds": 599, "not_afk_time_seconds": 299}]
    assert "activity" not in reel
    anime = await ask(nc, "user.stats", username="NightOwl", domain="cy.tube")
    assert anime["all_messages"] == [{"channel": "Anime", "count": 1}]
    assert await ask(nc, "user.profile", username="ReelTalk", channel=G) == {
        "username": "ReelTalk",
        "messages": 1,
        "all_messages": [{"channel": G, "count": 1}],
        "pms": 0,
        "kudos": {"plusplus": 0, "phrases": [{"phrase": "haha", "count": 1}]},
        "emotes": [{"emote": "kappa", "count": 2}],
        "activity": {"total_time_seconds": 599, "not_afk_time_seconds": 299},
    }
    assert await ask(nc, "user.messages", username="NightOwl", channel="420grindhouse") == {
        "username": "NightOwl",
        "channel": G,
        "message_count": 3,
    }
    assert await ask(nc, "user.messages", username="NightOwl") == {
        "username": "NightOwl",
        "channels": [{"channel": G, "count": 3}, {"channel": "Other", "count": 1}],
    }
    assert await ask(nc, "user.activity", username="ReelTalk", channel=G) == {
        "username": "ReelTalk",
        "channel": G,
        "activity": {"total_time_seconds": 599, "not_afk_time_seconds": 299},
        "first_seen": ts(1),
        "last_seen": ts(3),  # AFK changes and leaving are not "seen"
    }
    assert await ask(nc, "user.activity", username="NightOwl") == {
        "username": "NightOwl",
        "all_activity": [],
        "first_seen": ts(1),
        "last_seen": ts(701),
    }
    assert await ask(nc, "user.kudos", username="Projectionist") == {
        "username": "Projectionist",
        "plusplus": 1,
        "phrases": [],
        "total_received": 1,
    }
    nobody = await ask(nc, "user.stats", username="Nobody")
    assert nobody["username"] == "Nobody" and nobody["all_messages"] == [] and nobody["pms"] == 0


async def test_channel_commands(nc: Client) -> None:
    top = [
        {"username": "NightOwl", "count": 3},
        {"username": "Projectionist", "count": 1},
        {"username": "ReelTalk", "count": 1},
    ]
    assert await ask(nc, "channel.top_users", channel=G) == {
        "channel": G,
        "top_users": top,
    }  # [server] excluded
    assert await ask(nc, "channel.top_users", channel=G, limit="1") == {"channel": G, "top_users": top[:1]}
    snaps = [
        {"timestamp": ts(900), "connected_count": 2, "chat_count": 2},
        {"timestamp": ts(600), "connected_count": 3, "chat_count": 3},
        {"timestamp": ts(300), "connected_count": 3, "chat_count": 2},  # ReelTalk AFK
        {"timestamp": ts(0), "connected_count": 0, "chat_count": 0},  # at the first event (emotes)
    ]
    assert await ask(nc, "channel.population", channel=G) == {
        "channel": G,
        "current": snaps[0],
        "history": snaps,
        "peak": 3,
        "average": 2.0,  # (2 + 3 + 3 + 0) / 4: the rows of `history`
    }
    assert (await ask(nc, "channel.population", channel=G, hours=48))["history"] == snaps
    media = [
        {
            "timestamp": ts(700),
            "media_title": "Plan 9 from Outer Space",
            "media_type": "fi",
            "media_id": "p9",
        },
        {
            "timestamp": ts(0),
            "media_title": "Night of the Living Dead 1968",
            "media_type": "fi",
            "media_id": "abc",
        },
    ]
    assert await ask(nc, "channel.media_history", channel=G) == {"channel": G, "history": media}
    assert await ask(nc, "channel.media_history", channel=G, limit=1) == {"channel": G, "history": media[:1]}
    marks = {
        "high": {"timestamp": ts(600), "total_users": 3, "chat_users": 3},  # newest of the ties
        "low": {"timestamp": ts(0), "total_users": 0, "chat_users": 0},
    }
    assert await ask(nc, "channel.watermarks", channel=G) == marks
    assert await ask(nc, "channel.watermarks", channel=G, days=0) == {"high": None, "low": None}
    votes = await ask(nc, "channel.movie_votes", channel=G)
    assert votes == [
        {
            "media_title": "Plan 9 from Outer Space",
            "media_type": "fi",
            "media_id": "p9",
            "upvotes": 1,
            "downvotes": 0,
            "total_votes": 1,
            "score": 1,
            "last_vote": ts(701),
        },
        {
            "media_title": "Night of the Living Dead 1968",
            "media_type": "fi",
            "media_id": "abc",
            "upvotes": 1,
            "downvotes": 1,
            "total_votes": 2,
            "score": 0,
            "last_vote": ts(7),
        },
    ]
    one = await ask(nc, "channel.movie_votes", channel=G, media_title="Night of the Living Dead 1968")
    assert one == {k: v for k, v in votes[1].items() if k != "last_vote"}
    assert await ask(nc, "channel.movie_votes", channel=G, media_title="Unknown film") is None
    assert await ask(nc, "stats.global", channel=G) == {
        "channel": G,
        "domain": "cytu.be",
        "top_users": top,
        "watermarks": marks,
        "population": {"current": snaps[0], "history": snaps},
    }


async def test_leaderboards_and_time_series(nc: Client) -> None:
    assert await ask(nc, "leaderboard.messages", channel=G, limit=2) == {
        "channel": G,
        "leaderboard": [{"username": "NightOwl", "count": 3}, {"username": "Projectionist", "count": 1}],
    }
    everywhere = await ask(nc, "leaderboard.messages")  # every channel of the default domain
    assert everywhere["leaderboard"][0] == {"username": "NightOwl", "count": 4}
    assert await ask(nc, "leaderboard.kudos") == {
        "leaderboard": [{"username": u, "count": 1} for u in ("NightOwl", "Projectionist", "ReelTalk")]
    }
    assert await ask(nc, "leaderboard.emotes") == {"leaderboard": [{"emote": "kappa", "count": 3}]}
    assert await ask(nc, "leaderboard.emotes", domain="cy.tube") == {"leaderboard": []}
    series = await ask(nc, "timeseries.messages", channel=G)
    assert series == {
        "channel": G,
        "data": [{"hour": HOUR, "avg_active_users": pytest.approx(7 / 4), "messages": 6}],
    }
    window = await ask(nc, "timeseries.messages", channel=G, start_time=ts(3600))
    assert window["data"] == []
    assert await ask(nc, "timeseries.kudos", channel=G) == {
        "channel": G,
        "data": [{"hour": HOUR, "kudos": 3}],
    }


async def test_system_commands(nc: Client) -> None:
    ping = await ask(nc, "system.ping")
    assert ping["pong"] is True
    assert ping["service"] == "userstats"
    assert ping["version"]
    assert ping["metrics_endpoint"].endswith("/metrics")
    assert ping["timestamp"].endswith("+00:00"), ping
    health = await ask(nc, "system.health")
    assert health["status"] == "healthy", health
    assert health["nats_connected"] is True
    assert health["database_connected"] is True
    stats = await ask(nc, "system.stats")
    assert {k: v for k, v in stats.items() if k not in ("commands_processed", "events_processed")} == {
        "total_users": 4,  # NightOwl, ReelTalk, Projectionist, [server]
        "total_messages": 8,  # [server] included
        "total_pms": 1,
        "total_kudos": 1,  # ++ only, as 0.7.1
        "total_emotes": 3,
        "total_media_changes": 2,
        "active_sessions": 4,  # NightOwl in three channels, Projectionist
    }
    assert stats["events_processed"] == len([m for m in known_log().messages if m[0].startswith("kryten.")])
    assert stats["commands_processed"] >= 3


async def test_all_stats_as_kryten_cli_sends_it(nc: Client) -> None:
    body = {
        "service": "userstats",
        "command": "channel.all_stats",
        "limits": {"top_users": 2, "media_history": 1, "leaderboards": 1},
    }
    reply = await request(nc, body)
    data = reply["data"]
    assert reply["success"] is True and data["domain"] == "cytu.be"
    assert set(data) == {"domain", "system", "leaderboards", "channel"}
    assert (
        data["system"]["health"]["service"] == "userstats" and data["system"]["stats"]["total_messages"] == 8
    )
    assert data["leaderboards"] == {
        "messages": [{"username": "NightOwl", "count": 3}],
        "kudos": [{"username": "NightOwl", "count": 1}],
        "emotes": [{"emote": "kappa", "count": 3}],
    }
    ch = data["channel"]
    assert ch["top_users"] == [
        {"username": "NightOwl", "count": 3},
        {"username": "Projectionist", "count": 1},
    ]
    assert [m["media_title"] for m in ch["media_history"]] == ["Plan 9 from Outer Space"]
    assert ch["population"]["current"]["connected_count"] == 2 and len(ch["population"]["history_24h"]) == 4
    assert ch["watermarks"]["high"]["total_users"] == 3 and len(ch["movie_votes"]) == 2


async def test_alias_commands_and_read_your_writes(nc: Client) -> None:
    added = await request(nc, {"command": "alias.add", "username": "NightOwl", "alias": "Owl"})
    assert added["success"] and added["data"] == {
        "username": "NightOwl",
        "alias": "Owl",
        "added": True,
        "message": "Added alias 'Owl' for user 'NightOwl'",
    }
    seq = added["as_of_seq"]
    got = await request(nc, {"command": "alias.get", "username": "nightowl", "min_seq": seq})
    assert got["as_of_seq"] >= seq and got["data"] == {"username": "NightOwl", "aliases": ["owl"], "count": 1}
    again = await ask(nc, "alias.add", username="NightOwl", alias="OWL")
    assert again == {
        "username": "NightOwl",
        "alias": "OWL",
        "added": False,
        "message": "Alias 'OWL' already exists for user 'NightOwl'",
    }
    taken = await ask(nc, "alias.add", username="ReelTalk", alias="owl")
    assert (
        taken["added"] is False and taken["message"] == "Alias 'owl' is already assigned to user 'NightOwl'"
    )
    assert await ask(nc, "alias.find", alias="OWL") == {"alias": "OWL", "username": "NightOwl", "found": True}
    assert await ask(nc, "alias.find", alias="hawk") == {"alias": "hawk", "username": None, "found": False}
    upd = await ask(nc, "alias.update", old_alias="owl", new_alias="nightbird")
    assert upd == {
        "old_alias": "owl",
        "new_alias": "nightbird",
        "updated": True,
        "message": "Updated alias 'owl' to 'nightbird' for user 'NightOwl'",
    }
    missing = await ask(nc, "alias.update", old_alias="owl", new_alias="x")
    assert missing["updated"] is False and missing["message"] == "Alias 'owl' not found"
    wrong = await ask(nc, "alias.delete", username="ReelTalk", alias="nightbird")
    assert (
        wrong["deleted"] is False
        and wrong["message"] == "Alias 'nightbird' belongs to user 'NightOwl', not 'ReelTalk'"
    )
    await ask(nc, "alias.add", username="ReelTalk", alias="reel")
    listing = await ask(nc, "alias.list")
    assert listing == {
        "aliases": {"NightOwl": ["nightbird"], "ReelTalk": ["reel"]},
        "total_users": 2,
        "total_aliases": 2,
    }
    gone = await ask(nc, "alias.delete", username="nightowl", alias="NightBird")
    assert gone["deleted"] is True and gone["message"] == "Deleted alias 'NightBird' for user 'nightowl'"
    assert await ask(nc, "alias.delete", username="x", alias="nightbird") == {
        "username": "x",
        "alias": "nightbird",
        "deleted": False,
        "message": "Alias 'nightbird' not found",
    }
    # kudos to an alias resolve to its owner from the alias's position in the log on
    last = await publish_all(
        nc,
        [
            envelope(
                "chatMsg",
                {"username": "NightOwl", "msg": "++reel", "time": 5000},
                channel=G,
                domain="cytu.be",
                time_us=us(1200),
            )
        ],
    )
    kudos = await request(nc, {"command": "user.kudos", "username": "ReelTalk", "min_seq": last})
    assert kudos["data"]["plusplus"] == 1


async def test_seed_subjects_answer_like_the_unified_command(nc: Client) -> None:
    for query_type, params in [
        ("user.stats", {"username": "NightOwl", "channel": G}),
        ("user.messages", {"username": "NightOwl"}),
        ("user.activity", {"username": "ReelTalk"}),
        ("user.kudos", {"username": "Projectionist"}),
        ("channel.top_users", {"channel": G}),
        ("channel.population", {"channel": G}),
        ("channel.media_history", {"channel": G}),
        ("leaderboard.messages", {"channel": G}),
        ("leaderboard.kudos", {}),
        ("leaderboard.emotes", {}),
        ("system.stats", {}),
        ("channel.watermarks", {"channel": G}),
        ("channel.movie_votes", {"channel": G}),
        ("timeseries.messages", {"channel": G}),
        ("timeseries.kudos", {}),
    ]:
        seed = await request(nc, params, f"cytube.query.userstats.cytu.be.{query_type}")
        unified = await request(nc, {"command": query_type, "domain": "cytu.be", **params})
        if query_type == "system.stats":
            for r in (seed, unified):
                r["data"].pop("commands_processed")
        assert seed == unified, query_type
    other = await request(nc, {"username": "NightOwl"}, "cytube.query.userstats.cy.tube.user.messages")
    assert other["data"]["channels"] == [{"channel": "Anime", "count": 1}]
    health = await request(nc, b"", "cytube.query.userstats.cytu.be.system.health")
    assert health["data"]["status"] == "healthy"


async def test_min_seq_timeout_is_a_clear_error(nc: Client) -> None:
    reply = await request(nc, {"command": "system.stats", "min_seq": 10**9, "timeout": 0.3})
    assert reply["success"] is False and "Timed out after 0.3 s waiting for seq 1000000000" in reply["error"]


async def test_reply_caching_is_invisible(nc: Client) -> None:
    first = await request(nc, {"command": "leaderboard.kudos"})
    assert await request(nc, {"command": "leaderboard.kudos"}) == first
    last = await publish_all(
        nc,
        [
            envelope(
                "chatMsg",
                {"username": "ReelTalk", "msg": "++Projectionist", "time": 7000},
                channel=G,
                domain="cytu.be",
                time_us=us(1800),
            )
        ],
    )
    after = await request(nc, {"command": "leaderboard.kudos", "min_seq": last})
    assert after["data"]["leaderboard"][0] == {"username": "Projectionist", "count": 2}
    assert json.dumps(after) != json.dumps(first)
