"""Deterministic bridge traffic: envelopes exactly as kryten-robot publishes them.

Several channels, joins and leaves, chat with ++ and phrase kudos and #emotes, PMs, media
changes, AFK, and the noisy events the projection ignores. The same seed and start time
always give the same sequence.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from userstats.shared import events as ev
from userstats.shared.subjects import event_subject

DEFAULT_CHANNELS = (("cytu.be", "420Grindhouse"), ("cytu.be", "MovieNight"), ("cy.tube", "AnimeClub"))
EMOTES = ("Kappa", "PogChamp", "LUL", "monkaS", "FeelsGoodMan", "OMEGALUL", "catJAM", "Sadge")
TITLES = (
    "Night_of_the_Living_Dead.1968.mkv",
    "Plan.9.from.Outer.Space.mp4",
    "Carnival of Souls",
    "The_Brain_That_Wouldnt_Die.avi",
    "Mr. Robot S01E01",
    "Reefer_Madness.1936.webm",
)
WORDS = (
    "that print was gorgeous",
    "what is this",
    "best scene",
    "anyone else hear that",
    "brb",
    "this soundtrack though",
    "classic",
    "wait what",
    "i love this part",
    "so bad it's good",
)
_EVENT_WEIGHTS = (
    ("chatMsg", 70),
    ("mediaUpdate", 8),
    ("setAFK", 6),
    ("addUser", 5),
    ("userLeave", 5),
    ("pm", 3),
    ("usercount", 2),
    ("changeMedia", 1),
)


@dataclass
class _Channel:
    domain: str
    name: str
    pool: list[str]
    present: list[str] = field(default_factory=list)
    afk: set[str] = field(default_factory=set)


# PMs per 100 events a real bridge sees: 0.1, one a second at 1,000 events/s. CyTube sends a
# "pm" frame only to its sender and its recipient (src/channel/chat.js, handlePm), so the
# bridge's account sees only the PMs to or from itself (and CyTube throttles each user at 10 a
# second). The simulator's default, 3 per 100, is a stress of the PM path: every raw PM costs
# an erase in the stream (a rewrite of the block that holds it, bench.pm_deletes), so at 3% a
# busy channel's traffic would spend most of a core of nats-server on erasing.
BRIDGE_PM_WEIGHT = 0.1


class Simulator:
    """Yields (subject, envelope bytes) pairs; event time advances `step_us` per event."""

    def __init__(
        self,
        seed: int = 1,
        start_us: int = 1_764_950_400_000_000,  # 2025-12-05T16:00:00Z (userstats-sim: now)
        step_us: int = 20_000,
        channels: tuple[tuple[str, str], ...] = DEFAULT_CHANNELS,
        users_per_channel: int = 200,
        pm_weight: float = 3.0,  # PMs per 100 events (a stress: see BRIDGE_PM_WEIGHT)
    ) -> None:
        self.rng = random.Random(seed)
        self.now_us = start_us
        self.step_us = step_us
        self.channels = [
            _Channel(d, c, [f"{c[:4]}User{i}" for i in range(users_per_channel)]) for d, c in channels
        ]
        self._kinds = [k for k, _ in _EVENT_WEIGHTS]
        self._weights = [pm_weight if k == "pm" else float(w) for k, w in _EVENT_WEIGHTS]

    def _envelope(self, ch: _Channel, name: str, payload: Any) -> tuple[str, bytes]:
        env = ev.EnvelopeOut(
            event_name=name,
            payload=payload,
            channel=ch.name,
            domain=ch.domain,
            timestamp=ev.iso_from_us(self.now_us),
            correlation_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
        )
        return event_subject(ch.name, name), ev.encode(env)

    def _join(self, ch: _Channel) -> tuple[str, bytes] | None:
        absent = [u for u in ch.pool if u not in set(ch.present)] if len(ch.present) < len(ch.pool) else []
        if not absent:
            return None
        user = self.rng.choice(absent)
        ch.present.append(user)
        meta = {"afk": False, "muted": False, "aliases": [user]}
        return self._envelope(ch, "addUser", {"name": user, "rank": 1, "profile": {}, "meta": meta})

    def _chat_text(self, ch: _Channel, sender: str) -> str:
        r = self.rng.random()
        other = self.rng.choice(ch.present) if ch.present else "nobody"
        emote = self.rng.choice(EMOTES)
        if r < 0.10:
            return f"++{other} {self.rng.choice(WORDS)}"
        if r < 0.16:
            return f"thanks {other}++"
        if r < 0.24:
            return f"lol {other}"
        if r < 0.28:
            return f"hahaha {other}"
        if r < 0.45:
            return f"{self.rng.choice(WORDS)} #{emote}"
        if r < 0.48:
            return f"great movie{self.rng.choice(('++', '+', '--', '-'))}"
        return self.rng.choice(WORDS)

    def _event(self) -> tuple[str, bytes] | None:
        ch = self.rng.choice(self.channels)
        kind = self.rng.choices(self._kinds, self._weights)[0]
        if kind in ("addUser",) or (not ch.present and kind in ("chatMsg", "setAFK", "userLeave", "pm")):
            return self._join(ch)
        if kind == "chatMsg":
            sender = self.rng.choice(ch.present)
            text = self._chat_text(ch, sender)
            payload = {"username": sender, "msg": text, "meta": {}, "time": self.now_us // 1000}
            return self._envelope(ch, "chatMsg", payload)
        if kind == "userLeave":
            user = ch.present.pop(self.rng.randrange(len(ch.present)))
            ch.afk.discard(user)
            return self._envelope(ch, "userLeave", {"name": user})
        if kind == "setAFK":
            user = self.rng.choice(ch.present)
            afk = user not in ch.afk
            (ch.afk.add if afk else ch.afk.discard)(user)
            return self._envelope(ch, "setAFK", {"name": user, "afk": afk})
        if kind == "pm":
            sender = self.rng.choice(ch.present)
            payload = {
                "username": sender,
                "msg": "what's next?",
                "meta": {},
                "time": self.now_us // 1000,
                "to": "KrytenBot",
            }
            return self._envelope(ch, "pm", payload)
        if kind == "changeMedia":
            return self._envelope(ch, "changeMedia", self._media())
        if kind == "usercount":
            return self._envelope(ch, "usercount", len(ch.present))
        return self._envelope(ch, "mediaUpdate", {"currentTime": self.rng.random() * 100, "paused": False})

    def _media(self) -> dict[str, Any]:
        i = self.rng.randrange(len(TITLES))
        return {
            "id": f"vid{i}",
            "title": TITLES[i],
            "seconds": 5400,
            "type": "fi",
            "meta": {},
            "currentTime": 0,
            "paused": False,
        }

    def opening(self) -> Iterator[tuple[str, bytes]]:
        """What a bridge sees on joining: who is there, the emotes, the current media.

        The first tenth of each channel's pool is there already (420GUser0..19 with the
        defaults), so a channel has a population and active users from its first second.
        """
        for ch in self.channels:
            ch.present = ch.pool[: max(1, len(ch.pool) // 10)]
            users = [{"name": u, "rank": 1, "profile": {}, "meta": {"afk": False}} for u in ch.present]
            yield self._envelope(ch, "userlist", users)
            yield self._envelope(
                ch, "emoteList", [{"name": f"#{e}", "image": "", "source": f"#{e}"} for e in EMOTES]
            )
            yield self._envelope(ch, "changeMedia", self._media())

    def events(self, count: int) -> Iterator[tuple[str, bytes]]:
        """The opening, then `count - len(opening)` events (exactly `count` in all)."""
        produced = 0
        for item in self.opening():
            if produced >= count:
                return
            yield item
            produced += 1
        while produced < count:
            self.now_us += self.step_us
            event = self._event()
            if event is not None:
                yield event
                produced += 1
