"""The real bridge, kryten-robot 1.12.6, against a scripted CyTube (tests/cytube.py), with
nats-server, ingest and a replica as processes.

One channel's life, phase by phase: the bridge joins before the stream exists (its KV state
fills in what the stream cannot know), every kind of live chat, a bridge SIGTERM and
restart (CyTube replays its last 15 lines), a dropped socket (the bridge exits by itself and
is restarted, as systemd would), ingest stopped while the bridge keeps publishing, ingest
restarted after a renameEmote and after a setUserRank of an AFK user (the bridge's KV is
wrong about both by then: the stream must win), and a replica restarted.

Every figure is checked twice: against what the script implies (written out below), and
against the same read run on an independent replay of the whole stream from seq 1.
Durations come from the bridge's own timestamps of the frames the script sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from userstats.query import reads
from userstats.query.answers import READS
from userstats.shared import events as ev
from userstats.shared import requests
from userstats.shared.stream import Item
from userstats.shared.subjects import DEFAULT_STREAM

from testbed.harness import Service, Stack, caught_up, connect, request, wait_for
from tests.bridge import Bridge
from tests.cytube import CyTube, Media, Person, now_ms
from tests.integration.certs import make_certs
from tests.integration.streamtools import dump, dump_file, read_stream, rebuild

CHANNEL = "Grindhouse"
SUBJECT = "kryten.events.cytube.grindhouse"
US = 1_000_000
NOLD = Media("nold1968", "Night of the Living Dead 1968", 5760, "yt", 1)
PLAN9 = Media("plan9oos", "Plan 9 from Outer Space", 4740, "yt", 2)
OLD = ["Alice", "Bob", "Carol"]  # who said the 15 lines in CyTube's buffer, a day ago


class Run:
    """The processes and what the test saw the bridge publish."""

    def __init__(self, stack: Stack, cytube: CyTube, bridge: Bridge, nc: Client) -> None:
        self.stack = stack
        self.cytube = cytube
        self.bridge = bridge
        self.nc = nc
        self.marks: set[int] = set()
        self.mark_no = 0
        self.channels = f"{cytube.domain}/{CHANNEL}"
        self.ingest: Service | None = None
        self.query: Service | None = None

    async def on_media_update(self, msg: Msg) -> None:
        self.marks.add(int(json.loads(msg.data)["payload"]["currentTime"]))

    async def published(self) -> int:
        """Send a mark and wait until the bridge has published it: all before it is published."""
        self.mark_no += 1
        n = self.mark_no
        self.cytube.mark(n)
        await self.cytube.flush()
        await wait_for(lambda: n in self.marks, timeout=20, what=f"the bridge to publish mark {n}")
        return n

    async def stored(self) -> None:
        """published(), and the stream holds everything the bridge published before the mark.

        The mark (a mediaUpdate) is not captured: the stream keeps only what the projection
        uses. The server had every earlier message from the bridge's connection before it
        passed the mark on, and the stream stores in arrival order, so once its last seq holds
        still for a few polls after the mark, nothing before the mark is still on its way."""
        await self.published()
        js = self.nc.jetstream()
        seen: list[int] = []

        async def settled() -> bool:
            seen.append(int((await js.stream_info(DEFAULT_STREAM)).state.last_seq))
            return len(seen) >= 4 and len(set(seen[-4:])) == 1

        await wait_for(
            settled, timeout=20, interval=0.05, what="the stream to hold what came before the mark"
        )

    async def start_bridge(self) -> None:
        logins = self.cytube.logins
        self.bridge.start()
        await wait_for(
            lambda: self.cytube.logins > logins, timeout=30, what=f"bridge login\n{self.bridge.tail()}"
        )

    async def stop_bridge(self) -> int:
        """SIGTERM; CyTube keeps sending mediaUpdate frames, which let its publisher see the stop."""
        self.bridge.terminate()
        deadline = time.monotonic() + 30
        while self.bridge.running() and time.monotonic() < deadline:
            self.cytube.mark(0)
            await self.cytube.flush()
            await asyncio.sleep(0.1)
        return self.bridge.wait(1)

    def start_ingest(self) -> None:
        self.ingest = self.stack.ingest(USERSTATS_CHANNELS=self.channels)
        self.ingest.wait_healthy()

    def start_query(self) -> None:
        self.query = self.stack.query(USERSTATS_CHANNELS=self.channels)
        self.query.wait_healthy()

    async def settled(self) -> None:
        await self.stored()
        assert self.ingest is not None and self.query is not None
        await caught_up(self.nc, self.ingest)
        await caught_up(self.nc, self.query)

    async def kv(self, bucket: str, key: str) -> Any:
        try:
            entry = await (await self.nc.jetstream().key_value(f"kryten_{CHANNEL}_{bucket}")).get(key)
        except Exception:
            return None
        return json.loads(entry.value or b"null")


def envelopes(items: list[Item]) -> list[tuple[int, str, Any, int]]:
    """(seq, event name, payload, time in us) of every bridge event in the stream."""
    out = []
    for it in items:
        if it.subject.startswith("kryten.events."):
            env = json.loads(it.data)
            out.append(
                (
                    it.seq,
                    env["event_name"],
                    env["payload"],
                    ev.to_us(datetime.fromisoformat(env["timestamp"])),
                )
            )
    return out


def at(events: list[tuple[int, str, Any, int]], event: str, **payload: Any) -> list[int]:
    """Times of the `event` frames whose payload has these values."""
    return [
        t
        for _, n, p, t in events
        if n == event and isinstance(p, dict) and all(p.get(k) == v for k, v in payload.items())
    ]


async def test_real_bridge_against_scripted_cytube(stack: Stack, tmp_path: Path) -> None:
    started = time.monotonic()
    make_certs(tmp_path)
    accounts = {"StatsBot": ("hunter2", 2)}
    cytube = CyTube(CHANNEL, tmp_path / "server.pem", tmp_path / "server.key", accounts)
    await cytube.start()
    day_ago = now_ms() - 86_400_000
    cytube.setup(
        present=[
            Person("Alice"),
            Person("Bob", afk=True),
            Person("Carol", rank=2),
            Person("Troll", muted=True, smuted=True),
        ],
        emotes=["#LUL", "#Kappa"],
        playlist=[NOLD, PLAN9],
        history=[(OLD[i % 3], f"old line {i}", day_ago + i * 1000) for i in range(15)],
    )
    nc = await connect(stack.nats.url)
    bridge = Bridge(tmp_path, cytube.domain, CHANNEL, stack.nats.url, tmp_path / "ca.pem")
    run = Run(stack, cytube, bridge, nc)
    await nc.subscribe(f"{SUBJECT}.mediaupdate", cb=run.on_media_update)
    await nc.flush()
    cy = cytube
    try:
        # --- A: the bridge has been running before the stream exists (what it publishes is lost)
        await run.start_bridge()
        cy.chat("Alice", "this line is lost")  # but stays in CyTube's buffer
        await run.published()

        async def kv_complete() -> bool:
            users = await run.kv("userlist", "users") or []
            current = await run.kv("playlist", "current") or {}
            return len(users) == 5 and current.get("id") == NOLD.id

        await wait_for(kv_complete, timeout=20, what="the bridge's KV state")

        # --- B: ingest creates the stream and fills in from the KV; every kind of live chat
        run.start_ingest()
        run.start_query()
        cy.chat("Alice", "hello #LUL")  # an emote known only from the KV fill-in
        cy.chat("Bob", "Alice++ great pick")  # Bob was AFK: setUserMeta + setAFK first
        cy.chat("Carol", "lol Alice")
        cy.chat("Alice", "/me dances")
        cy.chat("Bob", ">implying")
        cy.chat("Carol", "/sp the ending twist")
        cy.chat("Carol", "/say quiet please")
        cy.chat("Carol", "mods are watching", meta={"modflair": 2})
        cy.chat("Alice", "movie++")  # a vote on the media known only from the KV
        cy.join("Dave", guest=True)  # addUser, and a [server] line for moderators (the bridge)
        cy.pm("Dave", "StatsBot", "hi bot, it's me")
        cy.pm("Alice", "StatsBot", "system:about")  # the bridge keeps system: PMs to itself
        cy.chat("Troll", "Alice++ buy followers")  # shadow-muted: moderators see meta.shadow
        cy.chat("Bob", "it's (really) good #Kappa #LUL")
        cy.chat("Carol", "Bob++ Bob++ haha Bob")
        await run.settled()
        votes = await ask(nc, "channel.movie_votes", channel=CHANNEL)
        assert [(v["media_title"], v["upvotes"], v["downvotes"]) for v in votes] == [(NOLD.title, 1, 0)]

        # --- C: bridge SIGTERM; while it is down Dave leaves, Erin joins, Alice speaks
        assert await run.stop_bridge() == 0
        cy.leave("Dave")
        cy.join("Erin")
        cy.chat("Alice", "said while the bridge was down")
        await run.start_bridge()  # the replayed buffer: 11 lines seen, 4 never in the stream
        await run.stored()

        # --- D: the socket drops; the bridge shuts down by itself and is started again
        cy.chat("Alice", "right before the drop")  # lost with the socket, or not: counted once
        cy.drop()
        code = await asyncio.to_thread(bridge.wait, 30)
        assert code == 0 and "CyTube connection lost" in bridge.tail(20000)
        await run.start_bridge()
        await run.stored()

        # --- E: ingest stopped while the bridge keeps publishing, then started
        assert run.ingest is not None
        run.ingest.stop()
        cy.chat("Alice", "while ingest is down #LUL")
        cy.play(PLAN9)
        cy.chat("Bob", "movie--")
        cy.chat("Carol", "great movie++")
        cy.set_afk("Alice", True)
        await run.stored()
        run.start_ingest()
        await run.settled()

        # --- F: renameEmote, and setUserRank of an AFK user; then ingest restarts
        cy.rename_emote("#LUL", "#LULW")
        cy.chat("Alice", "#LULW again")
        cy.set_afk("Bob", True)
        cy.set_rank("Bob", 2)

        async def kv_is_lossy() -> bool:
            users = await run.kv("userlist", "users") or []
            emotes = await run.kv("emotes", "list") or []
            bob = next((u for u in users if u.get("name") == "Bob"), {})
            return bob == {"name": "Bob", "rank": 2} and [e["name"] for e in emotes] == ["#LUL", "#Kappa"]

        await wait_for(kv_is_lossy, timeout=20, what="the bridge's KV to lose Bob's AFK and miss the rename")
        await run.settled()
        assert run.ingest is not None
        run.ingest.stop()
        run.start_ingest()  # appends the (lossy) KV state again
        cy.chat("Alice", "#LULW after the restart")
        await asyncio.sleep(2.5)  # Bob stays AFK a while after the restart
        cy.leave("Bob")
        await run.settled()

        # --- G: a replica restarted
        assert run.query is not None
        run.query.stop()
        run.start_query()
        await run.settled()

        await check_figures(run, await read_stream(nc))
        assert run.ingest is not None
        run.ingest.stop()
        assert dump_file(stack.db_path) == dump(rebuild(await read_stream(nc)))
        assert time.monotonic() - started < 120, f"took {time.monotonic() - started:.1f} s"
    finally:
        bridge.kill()
        await cy.stop()
        await nc.close()


async def ask(nc: Client, command: str, **params: Any) -> Any:
    reply = await request(nc, {"command": command, **params})
    assert reply["success"] is True, reply
    return reply["data"]


def replayed(con: Any, domain: str, command: str, params: dict[str, Any]) -> Any:
    """The same read, on the independent replay (same code, tables rebuilt from seq 1)."""
    req = requests.parse({"command": command, **params})
    (as_of,) = con.execute("SELECT event_time_us FROM projection_checkpoint").fetchone()
    data = READS[command](reads.Scope(con, domain, int(as_of)), req.params)
    return json.loads(msgspec.json.encode(data))


async def check_figures(run: Run, items: list[Item]) -> None:
    nc, domain = run.nc, run.cytube.domain
    replay = rebuild(items)
    events = envelopes(items)

    async def both(command: str, **params: Any) -> Any:
        ours = await ask(nc, command, **params)
        assert ours == replayed(replay, domain, command, params), command
        return ours

    # messages: B lines, the 4 lines the replayed buffer brought that the stream never had
    # (two old ones, Alice's from A and from C), the line at the drop, E and F lines
    expected_messages = {"Alice": 9, "Bob": 5, "Carol": 7, "[server]": 1}
    for user, n in expected_messages.items():
        stats = await both("user.stats", username=user, channel=CHANNEL)
        assert stats["messages"] == n, (user, stats)
    for user in ("Troll", "Dave", "Erin", "StatsBot"):
        assert (await both("user.stats", username=user, channel=CHANNEL))["messages"] == 0, user
    alice = await both("user.stats", username="Alice")
    assert alice["kudos_plusplus"] == 1 and alice["kudos_phrases"] == [{"phrase": "lol", "count": 1}]
    assert sorted((e["emote"], e["count"]) for e in alice["emotes"]) == [("lul", 2), ("lulw", 2)]
    assert alice["pms"] == 0  # her system: PM never left the bridge
    bob = await both("user.stats", username="Bob")
    assert bob["kudos_plusplus"] == 1 and bob["kudos_phrases"] == [{"phrase": "haha", "count": 1}]
    assert sorted((e["emote"], e["count"]) for e in bob["emotes"]) == [("kappa", 1), ("lul", 1)]
    assert (await both("user.stats", username="Dave"))["pms"] == 1

    # activity from the bridge's timestamps: Bob's session opened AFK at the KV fill-in,
    # AFK ended when he chatted, began again before his rank change, and he left
    kv_fill = next(
        ev.to_us(e.timestamp)
        for it in items
        if it.subject == "userstats.journal.kvstate"
        and isinstance(e := ev.JOURNAL_DECODER.decode(it.data), ev.KvState)
    )
    back = next(
        t for _, n, p, t in events if n == "setUserMeta" and p["name"] == "Bob" and not p["meta"]["afk"]
    )
    (away,) = at(events, "setAFK", name="Bob", afk=True)
    (left,) = at(events, "userLeave", name="Bob")
    total = (left - kv_fill) // US
    afk = (back - kv_fill) // US + (left - away) // US
    assert left - away > 2 * US  # long enough for a KV override to show
    bob_activity = await both("user.activity", username="Bob", channel=CHANNEL)
    assert bob_activity["activity"] == {"total_time_seconds": total, "not_afk_time_seconds": total - afk}
    # Dave left while the bridge was down: the userlist of its rejoin closed his session
    (dave_joined,) = at(events, "addUser", name="Dave")
    first_rejoin = next(t for _, n, p, t in events if n == "userlist" and t > dave_joined)
    dave = (first_rejoin - dave_joined) // US
    assert (await both("user.activity", username="Dave", channel=CHANNEL))["activity"] == {
        "total_time_seconds": dave,
        "not_afk_time_seconds": dave,
    }

    # leaderboards, votes, media, totals
    assert [(r["emote"], r["count"]) for r in (await both("leaderboard.emotes"))["leaderboard"]] == [
        ("lul", 3),
        ("lulw", 2),
        ("kappa", 1),
    ]
    assert sorted((r["username"], r["count"]) for r in (await both("leaderboard.kudos"))["leaderboard"]) == [
        ("Alice", 2),
        ("Bob", 2),
    ]
    top = (await both("channel.top_users", channel=CHANNEL))["top_users"]
    assert [(r["username"], r["count"]) for r in top] == [("Alice", 9), ("Carol", 7), ("Bob", 5)]
    votes = await both("channel.movie_votes", channel=CHANNEL)
    assert sorted((v["media_title"], v["upvotes"], v["downvotes"]) for v in votes) == [
        (NOLD.title, 1, 0),
        (PLAN9.title, 1, 1),
    ]
    history = (await both("channel.media_history", channel=CHANNEL))["history"]
    assert [h["media_title"] for h in history] == [PLAN9.title, NOLD.title]
    await both("channel.population", channel=CHANNEL)
    await both("channel.watermarks", channel=CHANNEL)
    await both("timeseries.messages", channel=CHANNEL)
    stats = await ask(nc, "system.stats")
    assert (stats["total_messages"], stats["total_pms"], stats["total_kudos"]) == (22, 1, 2)
    assert (stats["total_emotes"], stats["total_media_changes"]) == (6, 2)
    # Alice, Bob, Carol, Troll, StatsBot (KV), Dave, Erin (the rejoin's userlist), [server]
    assert stats["total_users"] == 8
    assert stats["active_sessions"] == 5  # Alice, Carol, Troll, StatsBot, Erin

    # the rules behind those figures, in the replay's own bookkeeping
    counters = dict(replay.execute("SELECT name, value FROM projection_counters").fetchall())
    assert counters["kvstate_parts_filled"] == 3  # the first start: roster, emotes, media
    assert counters["kvstate_parts_ignored"] == 6  # two later ingest starts: the stream wins
    assert counters["chat_shadow_ignored"] == 1
    assert counters["chat_backlog_duplicates"] >= 11 + 14
    # the 4 replayed lines count at the bridge's time, not a day ago (payload `time`)
    (oldest_hour,) = replay.execute("SELECT min(hour) FROM hourly_messages").fetchone()
    assert oldest_hour.replace(tzinfo=UTC).timestamp() > time.time() - 2 * 3600
