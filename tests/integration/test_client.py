"""Issue 9: the typed client against a running stack, the examples, the generated reference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from nats.aio.client import Client
from userstats.shared import messages as m
from userstats.shared import replies as r

from testbed.harness import Stack
from tests.integration.knownlog import G
from userstats.client import NotReadyError, UserstatsClient, UserstatsError, UserstatsUnavailable

ROOT = Path(__file__).resolve().parents[2]


async def test_every_method_decodes_the_real_replies(nc: Client) -> None:
    c = UserstatsClient(nc)
    stats = await c.user_stats("nightowl", channel=G)
    assert isinstance(stats, r.UserStats) and stats.username == "NightOwl" and stats.messages == 3
    assert stats.kudos_phrases == [m.PhraseRow("lol", 1)]
    assert (await c.user_profile("ReelTalk", channel=G)).activity == m.ActivityRow(599, 299)
    assert (await c.user_messages("NightOwl")).channels == [
        m.ChannelCountRow(G, 3),
        m.ChannelCountRow("Other", 1),
    ]
    assert (await c.user_activity("ReelTalk")).all_activity == [m.ChannelActivityRow(G, 599, 299)]
    assert (await c.user_kudos("Projectionist")).plusplus == 1
    assert (await c.stats_global(G)).top_users[0] == m.TopRow("NightOwl", 3)
    assert len((await c.channel_top_users(G, limit=2)).top_users) == 2
    assert len((await c.channel_population(G)).history) == 4
    assert (await c.channel_media_history(G, limit=1)).history[0].media_title == "Plan 9 from Outer Space"
    marks = await c.channel_watermarks(G)
    assert marks.high is not None and marks.high.total_users == 3
    votes = await c.channel_movie_votes(G)
    assert isinstance(votes, list) and votes[0].score == 1
    one = await c.channel_movie_votes(G, media_title="Plan 9 from Outer Space")
    assert isinstance(one, m.VoteSummary) and one.upvotes == 1
    assert await c.channel_movie_votes(G, media_title="nope") is None
    everything = await c.channel_all_stats(top_users=2, leaderboards=1)
    assert everything.system.health.status == "healthy" and len(everything.channel.top_users) == 2
    assert (await c.leaderboard_messages()).leaderboard[0].count == 4
    assert (await c.leaderboard_kudos()).leaderboard[0].username == "NightOwl"
    assert (await c.leaderboard_emotes()).leaderboard == [m.EmoteRow("kappa", 3)]
    assert (await c.timeseries_messages(G)).data[0].messages == 6
    assert (await c.timeseries_kudos(G)).data[0].kudos == 3
    assert (await c.system_ping()).pong is True
    assert (await c.system_health()).nats_connected is True
    assert (await c.system_stats()).total_messages == 8
    assert (await c.alias_list()).total_aliases == 0
    assert c.last_seq > 0


async def test_writes_errors_and_read_your_writes(nc: Client) -> None:
    c = UserstatsClient(nc, read_your_writes=True)
    added = await c.alias_add("NightOwl", "owl")
    assert added.added is True and c.last_seq > 0
    assert (await c.alias_find("OWL")).username == "NightOwl"  # min_seq sent for us
    assert (await c.alias_get("nightowl")).aliases == ["owl"]
    assert (await c.alias_update("owl", "hooter")).updated is True
    assert (await c.alias_delete("NightOwl", "hooter")).deleted is True
    with pytest.raises(UserstatsError) as info:
        await c.user_stats("")
    assert info.value.message == "username required" and info.value.command == "user.stats"
    with pytest.raises(NotReadyError):
        await c.system_stats(min_seq=10**9)  # type: ignore[call-arg]
    elsewhere = UserstatsClient(nc, subject="userstats.nobody.listens")
    with pytest.raises(UserstatsUnavailable):
        await elsewhere.system_ping()


def run_example(name: str, *args: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


async def test_examples_run_against_a_stack(nc: Client, stack: Stack) -> None:
    text = run_example("query_example.py", G, env={"NATS_URL": stack.nats.url})
    assert "top users of 420Grindhouse:" in text and "NightOwl" in text
    assert "recently played:" in text and "Plan 9 from Outer Space" in text
    assert "bad input gets a clear error: 'username required'" in text
    replica = next(s for s in stack.services if s.module == "query")
    figures = run_example("metrics_example.py", f"http://127.0.0.1:{replica.port}/metrics", env={})
    assert "userstats_total_messages" in figures and "userstats_query_as_of_seq" in figures


def test_query_endpoints_reference_is_up_to_date() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "userstats.docs", "--check"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    text = (ROOT / "QUERY_ENDPOINTS.md").read_text()
    for command in ("user.stats", "channel.all_stats", "alias.update", "timeseries.kudos"):
        assert f"### `{command}`" in text
