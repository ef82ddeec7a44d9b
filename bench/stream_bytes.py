"""Stream bytes per event and per day for one busy channel, before and after issue 20.

    python -m bench.stream_bytes [--hours 72] [--chat-per-hour 600] [--pm-per-hour 6]

The traffic is what the bridge (kryten-robot) publishes for one CyTube channel: every frame
CyTube sends becomes kryten.events.cytube.<channel>.<event> with the bridge's envelope. The
default mix is a busy channel: 600 chat lines an hour, a video playing 20 hours a day
(CyTube's server sends mediaUpdate every 5 s while one plays; a film is ~25 minutes, each
change brings changeMedia, setCurrent and a mediaUpdate, queueing brings queue and
setPlaylistMeta), joins and leaves each followed by usercount, AFK changes as setAFK plus
setUserMeta, and a few PMs.

Rows:
- before: the old stream (kryten.events.cytube.>, no compression), everything stored.
- projected subjects: the stream ingest declares now, without ingest running (raw PMs kept).
- after: the same stream (projected subjects, S2) with ingest running: each raw PM is replaced
  by its text-free journal event, plus ingest's own settings event.

"stored bytes" is the stream's own count (messages with headers and subjects, uncompressed);
"disk bytes" sums its message block files after the server stops. S2 compresses a block
(about 6 MB of messages here) when it is sealed, so the one still being written stays
uncompressed: the default 72 hours fill a few blocks; a run of a day or less shows no gain.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nats.js import api
from userstats.shared import events as ev
from userstats.shared.projection import CAPTURED_SUBJECTS, is_captured
from userstats.shared.subjects import event_subject

from bench.common import report, stack
from testbed.harness import NatsServer, Stack, connect, wait_for

CHANNEL, DOMAIN = "420Grindhouse", "cytu.be"
START_US = 1_765_000_000_000_000
HOUR_US = 3_600_000_000
OLD_SUBJECTS = ["kryten.events.cytube.>", "userstats.journal.>"]


def traffic(hours: float, chat_per_hour: int, pm_per_hour: int, seed: int = 7) -> Iterator[tuple[str, bytes]]:
    """The bridge's frames for one channel, in time order."""
    rng = random.Random(seed)
    users = [f"Viewer{i:03d}" for i in range(120)]
    present = set(users[:25])
    afk: set[str] = set()
    end = START_US + int(hours * HOUR_US)
    frames: list[tuple[int, str, Any]] = []

    def at_rate(per_hour: float) -> Iterator[int]:
        t = START_US
        while True:
            t += int(rng.expovariate(per_hour) * HOUR_US)
            if t >= end:
                return
            yield t

    for t in at_rate(chat_per_hour):
        frames.append((t, "chat", None))
    for t in at_rate(pm_per_hour):
        frames.append((t, "pm", None))
    for t in at_rate(30):
        frames.append((t, "join", None))
    for t in at_rate(30):
        frames.append((t, "leave", None))
    for t in at_rate(40):
        frames.append((t, "afk", None))
    for t in at_rate(3):
        frames.append((t, "queue", None))
    # a film of ~25 minutes after another, 20 of every 24 hours; mediaUpdate every 5 s
    t, n = START_US, 0
    while t < end:
        playing_until = t + 20 * HOUR_US
        while t < min(end, playing_until):
            n += 1
            frames.append((t, "changeMedia", n))
            length = int(rng.uniform(20, 30) * 60 * 1_000_000)
            tick = t + 5_000_000
            while tick < min(end, t + length):
                frames.append((tick, "mediaUpdate", (tick - t) / 1e6))
                tick += 5_000_000
            t += length
        t = playing_until + 4 * HOUR_US
    frames.sort(key=lambda f: f[0])

    def envelope(t: int, name: str, payload: Any) -> tuple[str, bytes]:
        env = ev.EnvelopeOut(
            name, payload, CHANNEL, DOMAIN, ev.iso_from_us(t), str(uuid.UUID(int=rng.getrandbits(128)))
        )
        return event_subject(CHANNEL, name), ev.encode(env)

    def user_view(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "rank": 1,
            "profile": {"image": "", "text": ""},
            "meta": {"afk": name in afk, "muted": False},
        }

    for t, kind, arg in frames:
        if kind == "chat":
            name = rng.choice(sorted(present)) if present else users[0]
            words = " ".join(
                rng.choice(("lol", "this film", "haha", "++Viewer001", "what", "#Kappa", "great"))
                for _ in range(rng.randint(2, 12))
            )
            yield envelope(t, "chatMsg", {"username": name, "msg": words, "meta": {}, "time": t // 1000})
        elif kind == "pm":
            yield envelope(
                t,
                "pm",
                {
                    "username": rng.choice(users),
                    "msg": "hey, what is on next?",
                    "meta": {},
                    "time": t // 1000,
                    "to": "KrytenBot",
                },
            )
        elif kind == "join":
            name = rng.choice([u for u in users if u not in present] or users)
            present.add(name)
            yield envelope(t, "addUser", user_view(name))
            yield envelope(t, "usercount", len(present))
        elif kind == "leave" and present:
            name = rng.choice(sorted(present))
            present.discard(name)
            afk.discard(name)
            yield envelope(t, "userLeave", {"name": name})
            yield envelope(t, "usercount", len(present))
        elif kind == "afk" and present:
            name = rng.choice(sorted(present))
            afk.symmetric_difference_update({name})
            yield envelope(t, "setAFK", {"name": name, "afk": name in afk})
            yield envelope(t, "setUserMeta", {"name": name, "meta": {"afk": name in afk, "muted": False}})
        elif kind == "queue":
            item = {
                "media": {
                    "id": uuid.UUID(int=rng.getrandbits(128)).hex[:11],
                    "title": "Some.Film.1971.mkv",
                    "seconds": 1500,
                    "duration": "25:00",
                    "type": "yt",
                    "meta": {},
                },
                "uid": rng.randint(1, 10**6),
                "temp": False,
                "queueby": "Viewer001",
            }
            yield envelope(t, "queue", {"item": item, "after": rng.randint(1, 10**6)})
            yield envelope(t, "setPlaylistMeta", {"count": 40, "rawTime": 60000, "time": "16:40:00"})
        elif kind == "mediaUpdate":
            yield envelope(t, "mediaUpdate", {"currentTime": arg, "paused": False})
        elif kind == "changeMedia":
            media = {
                "id": f"film{arg:05d}",
                "title": f"Film.Number.{arg}.1968.mkv",
                "seconds": 1500,
                "duration": "25:00",
                "type": "fi",
                "meta": {},
            }
            yield envelope(t, "changeMedia", {**media, "currentTime": 0, "paused": False})
            yield envelope(t, "setCurrent", arg)
            yield envelope(t, "mediaUpdate", {"currentTime": 0, "paused": False})


def disk_bytes(server: NatsServer, stream: str = "USERSTATS") -> int:
    blocks = Path(server.store).glob(f"jetstream/*/streams/{stream}/msgs/*.blk")
    return sum(p.stat().st_size for p in blocks)


async def fill(
    s: Stack, events: list[tuple[str, bytes]], subjects: list[str] | None, compression: bool
) -> tuple[int, int]:
    """Publish into USERSTATS (created here unless `subjects` is None: ingest made it)."""
    nc = await connect(s.nats.url)
    try:
        js = nc.jetstream()
        if subjects is not None:
            await js.add_stream(
                api.StreamConfig(
                    name="USERSTATS",
                    subjects=subjects,
                    storage=api.StorageType.FILE,
                    compression=api.StoreCompression.S2 if compression else api.StoreCompression.NONE,
                )
            )
        captured = [e for e in events if subjects == OLD_SUBJECTS or is_captured(e[0])]
        before = int((await js.stream_info("USERSTATS")).state.messages)
        for subject, data in events:  # the uncaptured ones are not stored: publish all, wait for ours
            await nc.publish(subject, data)
        await nc.flush()
        await wait_for(
            lambda: _messages(js, before + len(captured)), timeout=120, interval=0.05, what="messages stored"
        )
        if subjects is None:  # ingest runs: wait until every raw PM has been replaced

            async def erased() -> bool:
                info = await js.stream_info("USERSTATS", subjects_filter="kryten.events.cytube.*.pm")
                return not info.state.subjects

            await wait_for(erased, timeout=120, interval=0.1, what="raw PMs erased")
        info = await js.stream_info("USERSTATS")
        return int(info.state.messages), int(info.state.bytes)
    finally:
        await nc.close()


async def _messages(js: Any, at_least: int) -> bool:
    return int((await js.stream_info("USERSTATS")).state.messages) >= at_least


def measure(name: str, events: list[tuple[str, bytes]], hours: float, mode: str) -> dict[str, Any]:
    with stack() as s:
        ingest = None
        if mode == "after":
            ingest = s.ingest()
            ingest.wait_healthy()
            messages, stored = asyncio.run(fill(s, events, None, True))
            ingest.stop()
        else:
            subjects = OLD_SUBJECTS if mode == "before" else CAPTURED_SUBJECTS
            messages, stored = asyncio.run(fill(s, events, subjects, mode != "before"))
        assert isinstance(s.nats, NatsServer)
        s.nats.stop()
        disk = disk_bytes(s.nats)
    day = 24 / hours
    return {
        "stream": name,
        "messages": messages,
        "stored bytes": stored,
        "bytes/event": stored / max(1, messages),
        "stored MB/day": stored * day / 1e6,
        "disk MB/day": disk * day / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=72.0, help="hours of channel traffic (default 72)")
    ap.add_argument("--chat-per-hour", type=int, default=600)
    ap.add_argument("--pm-per-hour", type=int, default=6)
    args = ap.parse_args()
    events = list(traffic(args.hours, args.chat_per_hour, args.pm_per_hour))
    mix = Counter(s.rsplit(".", 1)[1] for s, _ in events)
    print(
        f"{len(events):,} bridge frames in {args.hours:g} h: "
        + ", ".join(f"{k} {v:,}" for k, v in mix.most_common())
    )
    rows = [
        measure("before: kryten.events.cytube.>, no compression", events, args.hours, "before"),
        measure("projected subjects, S2, no ingest (raw PMs)", events, args.hours, "subjects"),
        measure("after: projected subjects, S2, PMs redacted by ingest", events, args.hours, "after"),
    ]
    report(
        "stream_bytes",
        rows,
        ["stream", "messages", "stored bytes", "bytes/event", "stored MB/day", "disk MB/day"],
    )


if __name__ == "__main__":
    main()
