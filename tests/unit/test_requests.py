"""Request decoding: every kind of bad input gets a clear message (spec 4.2 error strings)."""

from __future__ import annotations

import json

import pytest
from userstats.shared import messages as m
from userstats.shared import requests

MAX = 65536


def parse(body: object) -> requests.Request:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.parse(requests.decode_object(data, MAX))


def error_of(body: object) -> tuple[str | None, str]:
    with pytest.raises(m.RequestError) as info:
        parse(body)
    return info.value.command, info.value.message


def test_service_system_addresses_any_service_as_with_kryten_robot() -> None:
    """kryten-shell pings every service with {"service": "system", "command": "system.ping"}."""
    assert requests.parse({"service": "system", "command": "system.ping"}).command == "system.ping"


def test_every_command_of_the_spec_is_known() -> None:
    # the 26 of 0.7.1, plus leaderboard.all (kryten-shell asks for it), channel.list (the pages)
    # and user.forget (issue 20)
    assert len(requests.COMMAND_PARAMS) == 29 and {"leaderboard.all", "channel.list", "user.forget"} <= set(
        requests.COMMAND_PARAMS
    )
    assert len(requests.SEED_COMMANDS) == 16 and set(requests.COMMAND_PARAMS) >= requests.SEED_COMMANDS


@pytest.mark.parametrize(
    ("body", "command", "message"),
    [
        (b"not json", None, "Invalid JSON"),
        (b"", None, "Invalid JSON: empty request"),
        (b"[1, 2]", None, "expected a JSON object, got list"),
        ({}, None, "Missing 'command' field"),
        ({"command": ""}, None, "Missing 'command' field"),
        ({"command": 5}, None, "Invalid 'command' field"),
        ({"command": "nope"}, "nope", "Unknown command: nope"),
        (
            {"command": "system.ping", "service": "robot"},
            None,
            "Command intended for 'robot', not 'userstats'",
        ),
        ({"command": "user.stats"}, "user.stats", "username required"),
        ({"command": "user.stats", "username": ""}, "user.stats", "username required"),
        ({"command": "user.stats", "username": 12}, "user.stats", "invalid parameter username"),
        ({"command": "channel.top_users"}, "channel.top_users", "channel required"),
        ({"command": "alias.find"}, "alias.find", "alias required"),
        ({"command": "alias.update", "old_alias": "a"}, "alias.update", "new_alias required"),
        (
            {"command": "alias.update", "old_alias": " ", "new_alias": ""},
            "alias.update",
            "old_alias required",
        ),
        (
            {"command": "channel.top_users", "channel": "c", "limit": None},
            "channel.top_users",
            "invalid parameter limit",
        ),
        (
            {"command": "channel.top_users", "channel": "c", "limit": 2.5},
            "channel.top_users",
            "invalid parameter limit",
        ),
        (
            {"command": "channel.population", "channel": "c", "hours": -1},
            "channel.population",
            "invalid parameter hours",
        ),
        ({"command": "channel.all_stats", "limits": None}, "channel.all_stats", "invalid parameter limits"),
        ({"command": "user.stats", "username": "x" * 500}, "user.stats", "invalid parameter username"),
        ({"command": "system.ping", "min_seq": -3}, "system.ping", "min_seq must be a non-negative integer"),
    ],
)
def test_bad_requests(body: object, command: str | None, message: str) -> None:
    got_command, got_message = error_of(body)
    assert got_command == command
    assert message in got_message


def test_oversized_request() -> None:
    with pytest.raises(m.RequestError, match="Request too large"):
        requests.decode_object(b"{" + b" " * MAX + b"}", MAX)


def test_numeric_strings_are_accepted_as_limits_and_caps_apply() -> None:
    req = parse({"command": "channel.top_users", "channel": "c", "limit": "2"})
    assert isinstance(req.params, m.TopUsersParams) and req.params.limit == 2
    assert m.clamp_limit(-1) == m.MAX_LIMIT and m.clamp_limit(10**9) == m.MAX_LIMIT and m.clamp_limit(5) == 5


def test_service_userstats_or_empty_is_accepted() -> None:
    assert parse({"command": "system.ping", "service": "userstats"}).command == "system.ping"
    assert parse({"command": "system.ping", "service": ""}).command == "system.ping"


def test_seed_subject_routing_keeps_domain_dots() -> None:
    assert requests.seed_route("cytube.query.userstats.cytu.be.user.stats", "cytube.query.userstats") == (
        "cytu.be",
        "user.stats",
    )
    req = requests.parse({"username": "a", "domain": "ignored"}, command="user.stats", domain="cy.tube")
    assert isinstance(req.params, m.UserParams) and req.params.domain == "cy.tube"
    with pytest.raises(m.RequestError, match="Unknown query type in subject"):
        requests.seed_route("cytube.query.userstats.stats", "cytube.query.userstats")
    with pytest.raises(m.RequestError) as info:
        requests.seed_route("cytube.query.userstats.cytu.be.nope", "cytube.query.userstats")
    assert "type: be.nope" not in info.value.message and "user.stats" in info.value.message
    # the subject's domain only for the types that take one
    assert requests.parse({}, command="system.stats", domain="cytu.be").params == m.NoParams()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"command": "channel.top_users", "channel": "c", "limt": 3},
            "unknown parameter 'limt' (did you mean 'limit'?); "
            "channel.top_users takes: channel, domain, limit",
        ),
        (
            {"command": "timeseries.messages", "channel": "c", "hours": 3},
            "unknown parameter 'hours'; timeseries.messages takes: channel, domain, start_time, end_time",
        ),
        ({"command": "system.stats", "channel": "c"}, "unknown parameter 'channel'; system.stats takes: no"),
        (
            {"command": "channel.all_stats", "limits": {"top_user": 3}},
            "unknown parameter 'limits.top_user' (did you mean 'limits.top_users'?)",
        ),
    ],
)
def test_unknown_parameters_are_rejected_naming_the_known_ones(body: dict[str, object], message: str) -> None:
    command, got = error_of(body)
    assert command == body["command"] and got.startswith(message)


def test_what_ecosystem_clients_send_is_accepted() -> None:
    """kryten-cli 2.7.0 (`kryten userstats all`), kryten-shell 0.1.4 (every userstats call it
    makes, read from its client.py), our client (min_seq with timeout), tracing ids."""
    bodies: list[dict[str, object]] = [
        {
            "service": "userstats",
            "command": "channel.all_stats",
            "limits": {"top_users": 20, "media_history": 15, "leaderboards": 10},
        },
        {"service": "userstats", "command": "user.stats", "username": "a"},
        {"service": "userstats", "command": "channel.all_stats"},
        {"service": "userstats", "command": "channel.top_users", "channel": "c", "limit": 20},
        {"service": "userstats", "command": "user.messages", "username": "a", "limit": 50},
        {"service": "userstats", "command": "user.activity", "username": "a"},
        {"service": "userstats", "command": "user.kudos", "username": "a"},
        {"service": "userstats", "command": "channel.population", "channel": "c"},
        {"service": "userstats", "command": "channel.media_history", "channel": "c", "limit": 50},
        {"service": "userstats", "command": "leaderboard.messages", "limit": 20},
        {"service": "userstats", "command": "leaderboard.kudos", "limit": 20},
        {"service": "userstats", "command": "leaderboard.emotes", "limit": 20},
        {"service": "userstats", "command": "system.health"},
        {"service": "userstats", "command": "system.stats"},
        {"command": "alias.find", "alias": "x", "min_seq": 3, "timeout": 5.0, "request_id": "r1"},
    ]
    for body in bodies:
        assert parse(body).command == body["command"]


def test_all_stats_limits_default_per_key() -> None:
    req = parse({"command": "channel.all_stats", "limits": {"top_users": 3}})
    assert isinstance(req.params, m.AllStatsParams)
    assert (req.params.limits.top_users, req.params.limits.media_history, req.params.limits.leaderboards) == (
        3,
        15,
        10,
    )


@pytest.mark.parametrize(
    "body", [b'{"command": "user.stats", "username": "\xe2\x82"}', b'"\xff"', b'{"\xc3": 1}']
)
def test_invalid_utf8_inside_json_strings_is_a_request_error(body: bytes) -> None:
    """msgspec raises UnicodeDecodeError, not DecodeError, for these (found by make soak)."""
    with pytest.raises(m.RequestError, match="Invalid JSON: not UTF-8"):
        requests.decode_object(body, 65536)
