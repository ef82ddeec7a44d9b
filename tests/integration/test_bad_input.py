"""Bad requests never crash a replica and always get the spec's error envelope."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from shared.requests import COMMAND_PARAMS
from tests.harness import Stack, request
from tests.integration.test_commands import nc  # noqa: F401  (the fixture: a stack with the known log)

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
async def test_fuzzed_requests_always_get_an_envelope(nc: Client, body: bytes) -> None:  # noqa: F811
    msg = await nc.request("kryten.userstats.command", body, timeout=10)
    assert_envelope(json.loads(msg.data))


async def test_specific_bad_inputs(nc: Client, stack: Stack) -> None:  # noqa: F811
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
    bad_seed = await request(nc, b"[1]", "cytube.query.userstats.cytu.be.user.stats")
    assert bad_seed["success"] is False and "expected a JSON object" in bad_seed["error"]
    # the replica is still fine
    assert (await request(nc, {"command": "system.ping"}))["success"] is True
    code, body = stack.services[-1].health()
    assert code == 200 and body["status"] == "healthy"
