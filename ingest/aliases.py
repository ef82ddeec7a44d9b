"""Outcomes of alias writes (spec 4.2 "Alias command semantics"), decided on the State.

Pure: ingest calls `decide` on its live State; a successful outcome comes with the journal
event to append, which the projection then applies with the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from userstats.shared import events as ev
from userstats.shared import messages as m
from userstats.shared.state import State


@dataclass(frozen=True)
class AliasOutcome:
    data: dict[str, Any]
    event: ev.AliasChange | None  # None: nothing to append (a business failure)


def _owner_matching(state: State, alias_lower: str, username: str) -> str | None:
    owners = state.aliases.get(alias_lower, {})
    for owner in owners:
        if owner.lower() == username.lower():
            return owner
    return None


def decide_add(state: State, p: m.AliasPairParams, now: datetime) -> AliasOutcome:
    alias = p.alias.lower()
    data: dict[str, Any] = {"username": p.username, "alias": p.alias, "added": False}
    if _owner_matching(state, alias, p.username) is not None:
        data["message"] = f"Alias '{p.alias}' already exists for user '{p.username}'"
        return AliasOutcome(data, None)
    owner = state.alias_owner(alias)
    if owner is not None:
        data["message"] = f"Alias '{p.alias}' is already assigned to user '{owner}'"
        return AliasOutcome(data, None)
    data["added"] = True
    data["message"] = f"Added alias '{p.alias}' for user '{p.username}'"
    return AliasOutcome(data, ev.AliasChange(now, "add", username=p.username, alias=alias))


def decide_delete(state: State, p: m.AliasPairParams, now: datetime) -> AliasOutcome:
    alias = p.alias.lower()
    data: dict[str, Any] = {"username": p.username, "alias": p.alias, "deleted": False}
    owner = state.alias_owner(alias)
    if owner is None:
        data["message"] = f"Alias '{p.alias}' not found"
        return AliasOutcome(data, None)
    mine = _owner_matching(state, alias, p.username)
    if mine is None:
        data["message"] = f"Alias '{p.alias}' belongs to user '{owner}', not '{p.username}'"
        return AliasOutcome(data, None)
    data["deleted"] = True
    data["message"] = f"Deleted alias '{p.alias}' for user '{p.username}'"
    return AliasOutcome(data, ev.AliasChange(now, "delete", username=mine, alias=alias))


def decide_update(state: State, p: m.AliasUpdateParams, now: datetime) -> AliasOutcome:
    old, new = p.old_alias.lower(), p.new_alias.lower()
    data: dict[str, Any] = {"old_alias": p.old_alias, "new_alias": p.new_alias, "updated": False}
    owner = state.alias_owner(old)
    if owner is None:
        data["message"] = f"Alias '{p.old_alias}' not found"
        return AliasOutcome(data, None)
    taken = state.alias_owner(new)
    if taken is not None:
        data["message"] = f"Alias '{p.new_alias}' is already assigned to user '{taken}'"
        return AliasOutcome(data, None)
    data["updated"] = True
    data["message"] = f"Updated alias '{p.old_alias}' to '{p.new_alias}' for user '{owner}'"
    return AliasOutcome(data, ev.AliasChange(now, "update", username=owner, alias=old, new_alias=new))
