"""The known event log of spec 4.2's command tests: every exact value they expect follows from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from userstats.shared import events as ev

from tests.projection_helpers import Log

G = "420Grindhouse"
# Two hours ago, on the hour: ingest's own journal events (settings) carry the wall clock,
# and query windows end at the newest event time, so the known log must be recent too.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def ts(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat()


def us(seconds: int) -> int:
    """The time `ts(seconds)` in epoch microseconds."""
    return ev.to_us(BASE + timedelta(seconds=seconds))


HOUR = BASE.strftime("%Y-%m-%d %H:00:00")


def known_log() -> Log:
    log = Log(BASE).at(0).emotes(["#Kappa", "#PogChamp"]).media("Night_of_the_Living_Dead.1968.mkv", "abc")
    log.at(1).join("NightOwl").join("ReelTalk").join("Projectionist")
    log.at(2).chat("NightOwl", "++Projectionist that print was gorgeous #Kappa")
    log.at(3).chat("ReelTalk", "lol NightOwl #kappa #KAPPA great movie++")
    log.at(4).chat("NightOwl", "haha ReelTalk")
    log.at(5).chat("[server]", "NightOwl joined (aliases: NightOwl)")
    log.at(6).event("pm", {"username": "NightOwl", "msg": "what&#39;s next?", "to": "KrytenBot"})
    log.at(7).chat("Projectionist", "movie--")
    log.at(10).chat("NightOwl", "hello other", channel="Other")
    log.at(20).event(
        "chatMsg", {"username": "NightOwl", "msg": "hi anime", "time": 99}, channel="Anime", domain="cy.tube"
    )
    log.at(60).afk("ReelTalk", True).at(360).afk("ReelTalk", False)
    log.at(600).leave("ReelTalk")
    log.at(700).media("Plan.9.from.Outer.Space.mp4", "p9")
    log.at(701).chat("NightOwl", "movie++")
    return log.at(1000).tick()
