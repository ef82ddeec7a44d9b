"""kryten-cli against userstats, nats.micro discovery, kryten lifecycle messages."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from testbed.harness import Stack, caught_up, connect, publish_all, request, wait_for
from tests.integration.knownlog import G, known_log, ts

KRYTEN = str(Path(sys.executable).parent / "kryten")
SHELL_PATH = Path(sys.prefix) / "kryten-shell"
DRIVER = Path(__file__).parent.parent / "kryten_shell_driver.py"


async def recording(nc: Client) -> list[dict[str, Any]]:
    """Every request body sent to the command subject (a plain subscriber gets a copy)."""
    seen: list[dict[str, Any]] = []

    async def record(msg: Any) -> None:
        seen.append(json.loads(msg.data))

    await nc.subscribe("kryten.userstats.command", cb=record)
    await nc.flush()
    return seen


def kryten(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KRYTEN, "--nats", stack.nats.url, "--channel", G, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def stable(data: dict[str, Any]) -> dict[str, Any]:
    """channel.all_stats without the figures that change from one request to the next."""
    out = json.loads(json.dumps(data))
    out["system"]["health"].pop("uptime_seconds")
    out["system"]["stats"].pop("commands_processed")
    return out


async def test_kryten_cli_userstats_all(nc: Client, stack: Stack) -> None:
    sent = await recording(nc)
    text = kryten(stack, "userstats", "all")
    assert text.returncode == 0, text.stderr
    assert "Userstats Channel Report" in text.stdout and "Status:    healthy" in text.stdout
    assert re.search(r"1\. NightOwl +3 messages", text.stdout)
    assert "[fi] Plan 9 from Outer Space" in text.stdout
    assert re.search(r"1\. kappa +3 uses", text.stdout)
    as_json = kryten(stack, "userstats", "all", "--format", "json", "--top-users", "2", "--leaderboards", "1")
    assert as_json.returncode == 0, as_json.stderr
    ours = await request(
        nc,
        {
            "service": "userstats",
            "command": "channel.all_stats",
            "limits": {"top_users": 2, "media_history": 15, "leaderboards": 1},
        },
    )
    assert stable(json.loads(as_json.stdout)) == stable(ours["data"])
    # what kryten-cli 2.7.0 sends: never a channel or domain (so the replica's default decides)
    cli = [b for b in sent if b.get("service") == "userstats" and "limits" in b]
    assert cli[0] == {
        "service": "userstats",
        "command": "channel.all_stats",
        "limits": {"top_users": 20, "media_history": 15, "leaderboards": 10},
    }
    assert cli[1]["limits"] == {"top_users": 2, "media_history": 15, "leaderboards": 1}


async def test_kryten_cli_without_configured_channels_gets_the_busiest_one(stack: Stack) -> None:
    """No `channels` configured: the replica defaults to the channel with the most chat in the
    stream (and its domain), so `kryten userstats all` works out of the box."""
    stack.ingest().wait_healthy()
    query = stack.query()
    client = await connect(stack.nats.url)
    try:
        await publish_all(client, [(s, d) for s, d, _ in known_log().messages])
        query.wait_healthy()
        await caught_up(client, query)
        out = kryten(stack, "userstats", "all", "--format", "json")
        assert out.returncode == 0, out.stderr
        explicit = await request(client, {"command": "channel.all_stats", "channel": G, "domain": "cytu.be"})
        assert stable(json.loads(out.stdout)) == stable(explicit["data"])
        assert [r["username"] for r in json.loads(out.stdout)["channel"]["top_users"]] == [
            "NightOwl",
            "Projectionist",
            "ReelTalk",
        ]
        anime = await request(client, {"command": "channel.all_stats", "domain": "cy.tube"})
        assert anime["data"]["channel"]["top_users"] == [{"username": "NightOwl", "count": 1}]
        # the domain default is the busiest channel's too
        stats = await request(client, {"command": "user.stats", "username": "NightOwl", "channel": G})
        assert stats["data"]["messages"] == 3
    finally:
        await client.close()


# What kryten-shell 0.1.4 sends with each command (besides "service": "userstats" and
# "command"); a parameter userstats did not accept would turn its answer into None.
SHELL_SENDS = {
    "user.stats": {"username"},
    "channel.all_stats": set(),
    "channel.top_users": {"channel", "limit"},
    "leaderboard.all": {"limit"},
    "user.messages": {"username", "limit"},
    "user.activity": {"username"},
    "user.kudos": {"username"},
    "channel.population": {"channel"},
    "channel.media_history": {"channel", "limit"},
    "leaderboard.messages": {"limit"},
    "leaderboard.kudos": {"limit"},
    "leaderboard.emotes": {"limit"},
    "system.health": set(),
    "system.stats": set(),
}


async def test_kryten_shell_client_and_views(nc: Client, stack: Stack) -> None:
    assert (SHELL_PATH / "kryten_shell" / "client.py").is_file(), "run `make venv` (installs kryten-shell)"
    sent = await recording(nc)
    env = {"PYTHONPATH": str(SHELL_PATH), "PATH": "/usr/bin:/bin", "HOME": str(stack.tmp)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-S",
        str(DRIVER),
        str(stack.nats.port),
        G,
        "NightOwl",
        "ReelTalk",
        "Projectionist",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    got = json.loads(stdout)
    failed = [name for name, value in got.items() if value is None]
    assert not failed, f"kryten-shell got no answer for {failed}: {stderr.decode()[-2000:]}"

    by_command: dict[str, set[str]] = {}
    for body in sent:
        if body.get("service") == "userstats":
            by_command.setdefault(body["command"], set()).update(set(body) - {"service", "command"})
    assert by_command == SHELL_SENDS
    assert {"service": "system", "command": "system.ping"} in sent  # its service discovery ping

    stats = got["get_user_stats"]
    assert stats["kudos_phrases"] == [{"phrase": "lol", "count": 1}] and stats["pms"] == 1
    assert stats["emotes"] == [{"emote": "kappa", "count": 1}]
    assert (stats["aliases"], stats["first_seen"], stats["last_seen"]) == ([], ts(1), ts(701))
    assert stats["messages"] == 0  # 0.7.1: without a channel; the per-channel counts are all_messages
    assert got["get_leaderboards"] == {
        "channel": None,
        "messages": [
            {"username": "NightOwl", "count": 4},
            {"username": "Projectionist", "count": 1},
            {"username": "ReelTalk", "count": 1},
        ],
        "kudos": [
            {"username": "NightOwl", "count": 1},
            {"username": "Projectionist", "count": 1},
            {"username": "ReelTalk", "count": 1},
        ],
        "emotes": [{"emote": "kappa", "count": 3}],
    }
    assert got["get_top_users"] == [
        {"username": "NightOwl", "count": 3},
        {"username": "Projectionist", "count": 1},
        {"username": "ReelTalk", "count": 1},
    ]
    assert got["get_leaderboard_messages"] == got["get_leaderboards"]["messages"]
    assert got["get_leaderboard_emotes"] == [{"emote": "kappa", "count": 3}]
    assert got["get_user_kudos"]["total_received"] == 1
    activity = got["get_user_activity"]
    assert (activity["first_seen"], activity["last_seen"]) == (ts(1), ts(3))
    population = got["get_channel_population"]
    # the same log as test_commands: rows of 2, 3, 3 and 0 (at the first event) connected
    assert (population["peak"], population["average"]) == (3, 2.0)
    assert [h["media_title"] for h in got["get_media_history"]] == [
        "Plan 9 from Outer Space",
        "Night of the Living Dead 1968",
    ]
    assert got["get_userstats_health"]["status"] == "healthy"
    assert got["get_userstats_system_stats"]["total_messages"] == 8
    ping = got["ping_service"]
    assert ping["service"] == "userstats" and ping["pong"] is True and ping["version"]

    text = got["rendered"]
    assert "lol: 1" in text["users_view_stats"] and "kappa: 1" in text["users_view_stats"]
    assert "Private Messages:[/] 1" in text["users_view_stats"]
    assert "NightOwl: 3 messages" in text["users_view_leaderboards"]
    assert "kappa: 3 uses" in text["users_view_leaderboards"]
    assert f"First seen:[/] {ts(1)}" in text["command_stats"]
    assert "NightOwl: 3" in text["command_leaderboard"]
    assert f"First Seen:[/] {ts(1)}" in text["command_activity"]
    assert "Received:[/] 1" in text["command_kudos"]
    assert "Peak:[/] 3" in text["command_population"] and "Average:[/] 2.0" in text["command_population"]
    assert "Media History (2 entries)" in text["command_history"]


async def test_nats_micro_discovery(nc: Client, stack: Stack) -> None:
    second = stack.query()
    second.wait_healthy()
    pings: list[dict[str, Any]] = []
    inbox = nc.new_inbox()

    async def on_pong(msg: Any) -> None:
        pings.append(json.loads(msg.data))

    sub = await nc.subscribe(inbox, cb=on_pong)
    await nc.publish("$SRV.PING.userstats", b"", reply=inbox)
    await wait_for(lambda: len(pings) == 2, timeout=5, what="two replicas answering $SRV.PING")
    await sub.unsubscribe()
    assert {p["name"] for p in pings} == {"userstats"} and len({p["id"] for p in pings}) == 2
    info = json.loads((await nc.request("$SRV.INFO.userstats", b"", timeout=5)).data)
    assert {(e["name"], e["subject"], e["queue_group"]) for e in info["endpoints"]} == {
        ("command", "kryten.userstats.command", "userstats-query"),
        ("seed", "cytube.query.userstats.>", "userstats-query"),
    }
    before = json.loads((await nc.request(f"$SRV.STATS.userstats.{info['id']}", b"", timeout=5)).data)
    await request(nc, {"command": "user.stats"})  # an error envelope counts as an endpoint error
    stats_all = [
        json.loads((await nc.request(f"$SRV.STATS.userstats.{p['id']}", b"", timeout=5)).data) for p in pings
    ]
    commands = [e for s in stats_all for e in s["endpoints"] if e["name"] == "command"]
    assert sum(e["num_requests"] for e in commands) >= 1 + sum(
        e["num_requests"] for e in before["endpoints"] if e["name"] == "command"
    )
    assert any(e["num_errors"] >= 1 and e["last_error"] == "username required" for e in commands)
    assert all(e["average_processing_time"] > 0 for e in commands if e["num_requests"])


async def test_lifecycle_messages(stack: Stack, tmp_path: Path) -> None:
    cfg = tmp_path / "lifecycle.json"
    cfg.write_text(
        json.dumps(
            {
                "service": {"name": "UserStats", "heartbeat_interval": 5},
                "channels": [{"domain": "cytu.be", "channel": G}],
            }
        )
    )
    client = await connect(stack.nats.url)
    seen: list[tuple[str, dict[str, Any]]] = []

    async def record(msg: Any) -> None:
        seen.append((msg.subject, json.loads(msg.data)))

    await client.subscribe("kryten.lifecycle.userstats.>", cb=record)
    await client.flush()  # the subscription must reach the server before the replica starts
    try:
        stack.ingest().wait_healthy()
        query = stack.query(USERSTATS_CONFIG=str(cfg))
        query.wait_healthy()
        await wait_for(lambda: any(s.endswith(".startup") for s, _ in seen), timeout=10, what="startup")
        startup = next(b for s, b in seen if s.endswith(".startup"))
        assert list(startup)[:6] == [
            "service",
            "version",
            "hostname",
            "timestamp",
            "uptime_seconds",
            "metadata",
        ]
        assert startup["service"] == "userstats"
        assert startup["metadata"]["endpoints"]["metrics"] == {"port": query.port, "path": "/metrics"}
        await client.publish("kryten.lifecycle.robot.startup", b"{}")
        await client.publish("kryten.service.discovery.poll", b"")
        await wait_for(
            lambda: sum(s.endswith(".startup") for s, _ in seen) >= 3, timeout=10, what="re-announcements"
        )
        again = [b for s, b in seen if b.get("re_announcement")]
        assert again and again[0]["channels_configured"] == 1 and again[0]["metrics_port"] == query.port
        await wait_for(lambda: any(s.endswith(".heartbeat") for s, _ in seen), timeout=8, what="heartbeat")
        query.stop()
        await wait_for(lambda: any(s.endswith(".shutdown") for s, _ in seen), timeout=5, what="shutdown")
        shutdown = [b for s, b in seen if s.endswith(".shutdown")]
        assert shutdown and shutdown[0]["reason"] == "Normal shutdown"
    finally:
        await client.close()
