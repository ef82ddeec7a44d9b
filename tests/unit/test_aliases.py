"""Alias write replies (spec 4.2 "Alias command semantics"): every outcome of add, delete and
update, as the exact bytes of the reply envelope ingest sends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from userstats.ingest import aliases
from userstats.shared import forget
from userstats.shared import messages as m
from userstats.shared.state import State

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ENV = b'{"service":"userstats","command":"%s","success":true,"data":%s,"as_of_seq":7}'


def _state() -> State:
    return State(aliases={"owl": {"NightOwl": 3}, "hoot": {"Barn": 5}})


CASES: list[tuple[str, Callable[[State, Any, datetime], aliases.AliasOutcome], Any, bytes, bool]] = [
    (
        "alias.add",
        aliases.decide_add,
        m.AliasPairParams(username="Dawn", alias="Lark"),
        b'{"username":"Dawn","alias":"Lark","added":true,"message":"Added alias \'Lark\' for user \'Dawn\'"}',
        True,
    ),
    (
        "alias.add",
        aliases.decide_add,
        m.AliasPairParams(username="nightowl", alias="OWL"),
        b'{"username":"nightowl","alias":"OWL","added":false,'
        b"\"message\":\"Alias 'OWL' already exists for user 'nightowl'\"}",
        False,
    ),
    (
        "alias.add",
        aliases.decide_add,
        m.AliasPairParams(username="Dawn", alias="owl"),
        b'{"username":"Dawn","alias":"owl","added":false,'
        b"\"message\":\"Alias 'owl' is already assigned to user 'NightOwl'\"}",
        False,
    ),
    (
        "alias.delete",
        aliases.decide_delete,
        m.AliasPairParams(username="Dawn", alias="nope"),
        b'{"username":"Dawn","alias":"nope","deleted":false,"message":"Alias \'nope\' not found"}',
        False,
    ),
    (
        "alias.delete",
        aliases.decide_delete,
        m.AliasPairParams(username="Dawn", alias="Owl"),
        b'{"username":"Dawn","alias":"Owl","deleted":false,'
        b"\"message\":\"Alias 'Owl' belongs to user 'NightOwl', not 'Dawn'\"}",
        False,
    ),
    (
        "alias.delete",
        aliases.decide_delete,
        m.AliasPairParams(username="NIGHTOWL", alias="Owl"),
        b'{"username":"NIGHTOWL","alias":"Owl","deleted":true,'
        b"\"message\":\"Deleted alias 'Owl' for user 'NIGHTOWL'\"}",
        True,
    ),
    (
        "alias.update",
        aliases.decide_update,
        m.AliasUpdateParams(old_alias="nope", new_alias="x"),
        b'{"old_alias":"nope","new_alias":"x","updated":false,"message":"Alias \'nope\' not found"}',
        False,
    ),
    (
        "alias.update",
        aliases.decide_update,
        m.AliasUpdateParams(old_alias="Owl", new_alias="HOOT"),
        b'{"old_alias":"Owl","new_alias":"HOOT","updated":false,'
        b"\"message\":\"Alias 'HOOT' is already assigned to user 'Barn'\"}",
        False,
    ),
    (
        "alias.update",
        aliases.decide_update,
        m.AliasUpdateParams(old_alias="Owl", new_alias="Strix"),
        b'{"old_alias":"Owl","new_alias":"Strix","updated":true,'
        b"\"message\":\"Updated alias 'Owl' to 'Strix' for user 'NightOwl'\"}",
        True,
    ),
]


@pytest.mark.parametrize(("command", "decide", "params", "data", "appends"), CASES)
def test_alias_write_reply_bytes(
    command: str,
    decide: Callable[[State, Any, datetime], aliases.AliasOutcome],
    params: Any,
    data: bytes,
    appends: bool,
) -> None:
    outcome = decide(_state(), params, NOW)
    assert m.ok(command, outcome.data, 7) == ENV % (command.encode(), data)
    assert (outcome.event is not None) is appends


def test_forget_reply_bytes() -> None:
    """user.forget's reply, the other write ingest decides (shared/forget.py)."""
    state = State(users_lower={"dawn": "Dawn"})
    outcome = forget.decide(state, m.ForgetParams(username="DAWN"), NOW)
    h = forget.user_hash("dawn").encode()
    data = (
        b'{"username":"DAWN","forgotten":true,"known":true,"already_forgotten":false,"user_hash":"%s",'
        b'"message":"Forgot user \'DAWN\': their rows are removed and they are no longer counted; '
        b'their raw events are being deleted from the stream"}' % h
    )
    assert m.ok("user.forget", outcome.data, 7) == ENV % (b"user.forget", data)
