"""Bad requests never crash a replica and always get the spec's error envelope."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from userstats.shared.requests import COMMAND_PARAMS

from testbed.harness import Stack, request

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
param_names = st.sampled_from(
    [
        "username",
        "channel",
        "domain",
        "limit",
        "hours",
        "days",
        "limits",
        "alias",
        "old_alias",
        "new_alias",
        "media_title",
        "start_time",
        "end_time",
        "min_seq",
        "timeout",
        "service",
    ]
)
requests_ = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"command": st.sampled_from(sorted(COMMAND_PARAMS)) | st.text(max_size=20)},
        optional={"service": st.sampled_from(["userstats", "robot", "", None])},
    ).flatmap(
        lambda base: st.dictionaries(param_names, json_values, max_size=5).map(
            lambda extra: json.dumps({**extra, **base}).encode()
        )
    ),
)


def assert_envelope(reply: dict[str, Any]) -> None:
    assert reply["service"] == "userstats"
    assert isinstance(reply["success"], bool)
    assert isinstance(reply["as_of_seq"], int)
    if reply["success"]:
        assert "data" in reply
    else:
        assert isinstance(reply["error"], str) and reply["error"]
        assert "Traceback" not in reply["error"] and reply["error"] != "Internal error", reply


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=requests_)
async def test_fuzzed_requests_always_get_an_envelope(nc: Client, body: bytes) -> None:
    msg = await nc.request("kryten.userstats.command", body, timeout=10)
    assert_envelope(json.loads(msg.data))


async def test_an_empty_answer_says_where_the_channel_is(nc: Client) -> None:
    elsewhere = await request(nc, {"command": "channel.top_users", "channel": "anime"})
    assert elsewhere["success"] is True and elsewhere["data"]["top_users"] == []
    assert (
        elsewhere["note"] == "channel anime has no data on cytu.be; it is on cy.tube (set domain to cy.tube)"
    )
    there = await request(nc, {"command": "channel.top_users", "channel": "Anime", "domain": "cy.tube"})
    assert there["data"]["top_users"] == [{"username": "NightOwl", "count": 1}] and "note" not in there
    typo = await request(nc, {"command": "channel.population", "channel": "420Grindhous"})
    assert typo["note"].startswith("channel 420Grindhous has no data on cytu.be; channels with data: ")
    assert "cytu.be/420Grindhouse" in typo["note"] and "cy.tube/Anime" in typo["note"]
    here = await request(nc, {"command": "channel.population", "channel": "420grindhouse"})
    assert "note" not in here and here["data"]["current"] is not None
    everything = await request(nc, {"command": "channel.all_stats", "channel": "Anime"})
    assert "cy.tube" in everything["note"]


async def test_specific_bad_inputs(nc: Client, stack: Stack) -> None:
    huge = json.dumps({"command": "user.stats", "username": "x" * 70_000}).encode()
    reply = await request(nc, huge)
    assert reply["success"] is False and reply["error"].startswith("Request too large")
    capped = await request(nc, {"command": "channel.top_users", "channel": "420Grindhouse", "limit": 10**12})
    assert capped["success"] is True and len(capped["data"]["top_users"]) == 3
    negative = await request(nc, {"command": "leaderboard.kudos", "limit": -1})
    assert negative["success"] is True
    bad_time = await request(
        nc, {"command": "timeseries.messages", "channel": "c", "start_time": "yesterday"}
    )
    assert bad_time["success"] is False and "start_time: not an ISO-8601 date" in bad_time["error"]
    assert bad_time["command"] == "timeseries.messages"  # the command was read, so it is named
    typo = await request(nc, {"command": "channel.top_users", "channel": "420Grindhouse", "limt": 3})
    assert typo["success"] is False and typo["command"] == "channel.top_users"
    assert typo["error"].startswith("unknown parameter 'limt' (did you mean 'limit'?)")
    ignored = await request(nc, {"command": "timeseries.messages", "channel": "420Grindhouse", "hours": 3})
    assert ignored["success"] is False and "timeseries.messages takes: channel, domain" in ignored["error"]
    nope = await request(nc, {}, "cytube.query.userstats.cytu.be.nope")
    assert nope["success"] is False and "command" not in nope
    assert nope["error"].startswith("Unknown query type in subject 'cytube.query.userstats.cytu.be.nope'")
    seed_stats = await request(nc, b"", "cytube.query.userstats.cytu.be.system.stats")
    assert seed_stats["success"] is True  # the subject's domain is not a parameter of system.stats
    bad_seed = await request(nc, b"[1]", "cytube.query.userstats.cytu.be.user.stats")
    assert bad_seed["success"] is False and "expected a JSON object" in bad_seed["error"]
    # the replica is still fine
    assert (await request(nc, {"command": "system.ping"}))["success"] is True
    code, body = stack.services[-1].health()
    assert code == 200 and body["status"] == "healthy"
