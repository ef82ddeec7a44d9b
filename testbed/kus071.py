"""kryten-userstats 0.7.1 itself, for the import tests: its database code writes the SQLite
file, and its command handlers answer from it, so "what 0.7.1 answered" is not our guess.

The Makefile installs the published wheel into .venv/reference (tests/reference/requirements.txt).
Its top-level package is named `userstats` like ours, so its two modules are loaded here under
other names. They need only the standard library and kryten-py (a kryten-cli dependency).
"""

from __future__ import annotations

import importlib.util
import logging
import random
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

REFERENCE = Path(sys.prefix) / "reference" / "userstats"


def _load(name: str) -> ModuleType:
    path = REFERENCE / f"{name}.py"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: run `make venv` (it installs kryten-userstats 0.7.1 there)")
    spec = importlib.util.spec_from_file_location(f"kryten_userstats_071_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_database = _load("database")
_publisher = _load("nats_publisher")

DOMAIN = "cytu.be"
OTHER_DOMAIN = "other.example"
CHANNELS = ("lounge", "movies")


class Reference:
    """A 0.7.1 database file and 0.7.1's own handlers over it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: Any = _database.StatsDatabase(path, logging.getLogger("kryten-userstats-0.7.1"))
        app = SimpleNamespace(db=self.db, _events_processed=0, _commands_processed=0, activity_tracker=None)
        client = SimpleNamespace(config=SimpleNamespace(channels=[SimpleNamespace(domain=DOMAIN)]))
        self.publisher: Any = _publisher.StatsPublisher(app, client)

    async def answer(self, command: str, **params: Any) -> Any:
        """The `data` 0.7.1 replies with, from its own command dispatcher."""
        reply: dict[str, Any] = await self.publisher._handle_command(
            {"service": "userstats", "command": command, **params}
        )
        assert reply["success"] is True, reply
        return reply["data"]

    async def fill(self, seed: int, users: int = 40) -> list[str]:
        """Write a history through 0.7.1's own methods; returns the usernames."""
        rng = random.Random(seed)
        db = self.db
        await db.initialize()
        names = [f"user{i}" for i in range(users)] + ["Alice", "alice", "[server]", "Bob_2"]
        for name in names:
            await db.track_user(name)
        for name in rng.sample(names, len(names) // 3):
            await db.track_user(name)  # a later visit: last_seen moves
        for _ in range(600):
            name, channel = rng.choice(names), rng.choice(CHANNELS)
            domain = DOMAIN if rng.random() < 0.85 else OTHER_DOMAIN
            await db.increment_message_count(name, channel, domain)
        for _ in range(120):
            await db.increment_pm_count(rng.choice(names))
        for _ in range(150):
            await db.increment_kudos_plusplus(rng.choice(names), rng.choice(CHANNELS), DOMAIN)
        for _ in range(150):
            phrase = rng.choice(("lol", "haha", "rofl"))
            await db.increment_kudos_phrase(rng.choice(names), rng.choice(CHANNELS), DOMAIN, phrase)
        for _ in range(200):
            emote = rng.choice(("kappa", "pogchamp", "lul", "monkas"))
            domain = DOMAIN if rng.random() < 0.9 else OTHER_DOMAIN
            await db.increment_emote_usage(rng.choice(names), rng.choice(CHANNELS), domain, emote)
        for _ in range(80):
            total = rng.randint(60, 7200)
            await db.update_user_activity(
                rng.choice(names), rng.choice(CHANNELS), DOMAIN, total, total - rng.randint(0, 60)
            )
        titles = ["Night of the Living Dead 1968", "Mr Robot", "Big Buck Bunny", "Sintel"]
        for i in range(30):
            kind, mid = rng.choice((("yt", f"vid{i}"), ("", ""), ("gd", str(1000 + i))))
            await db.log_media_change(rng.choice(CHANNELS), DOMAIN, rng.choice(titles), kind, mid)
        for channel in CHANNELS:
            for _ in range(25):
                await db.save_population_snapshot(channel, DOMAIN, rng.randint(3, 40), rng.randint(3, 40))
        for _ in range(40):
            title = rng.choice(titles)
            await db.record_movie_vote(
                rng.choice(CHANNELS), DOMAIN, title, "yt", "abc", rng.choice(names), rng.choice((1, -1))
            )
        for owner, alias in (("Alice", "ali"), ("user1", "u1"), ("user2", "the_second"), ("Bob_2", "bobby")):
            await db.add_user_alias(owner, alias)
        await db.add_trigger_phrase("lol")
        await db.add_trigger_phrase("gg")
        return names
