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

from tests.harness import Stack, connect, request, wait_for
from tests.integration.test_commands import G, nc  # noqa: F401  (the stack with the known log)

KRYTEN = str(Path(sys.executable).parent / "kryten")


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


async def test_kryten_cli_userstats_all(nc: Client, stack: Stack) -> None:  # noqa: F811
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


async def test_nats_micro_discovery(nc: Client, stack: Stack) -> None:  # noqa: F811
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
        await asyncio.sleep(0.3)
        shutdown = [b for s, b in seen if s.endswith(".shutdown")]
        assert shutdown and shutdown[0]["reason"] == "Normal shutdown"
    finally:
        await client.close()
