"""Outcomes of alias writes (spec 4.2 "Alias command semantics"), decided on the State.

Pure: ingest calls `decide` on its live State; a successful outcome comes with the journal
event to append, which the projection then applies with the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from userstats.shared import events as ev
from userstats.shared import messages as m
from userstats.shared import replies as r
from userstats.shared.state import State


@dataclass(frozen=True)
class AliasOutcome:
    data: r.AliasAdded | r.AliasDeleted | r.AliasUpdated
    event: ev.AliasChange | None  # None: nothing to append (a business failure)


def _owner_matching(state: State, alias_lower: str, username: str) -> str | None:
    owners = state.aliases.get(alias_lower, {})
    for owner in owners:
        if owner.lower() == username.lower():
            return owner
    return None


def decide_add(state: State, p: m.AliasPairParams, now: datetime) -> AliasOutcome:
    alias = p.alias.lower()

    def refused(message: str) -> AliasOutcome:
        return AliasOutcome(r.AliasAdded(p.username, p.alias, False, message), None)

    if _owner_matching(state, alias, p.username) is not None:
        return refused(f"Alias '{p.alias}' already exists for user '{p.username}'")
    owner = state.alias_owner(alias)
    if owner is not None:
        return refused(f"Alias '{p.alias}' is already assigned to user '{owner}'")
    return AliasOutcome(
        r.AliasAdded(p.username, p.alias, True, f"Added alias '{p.alias}' for user '{p.username}'"),
        ev.AliasChange(now, "add", username=p.username, alias=alias),
    )


def decide_delete(state: State, p: m.AliasPairParams, now: datetime) -> AliasOutcome:
    alias = p.alias.lower()

    def refused(message: str) -> AliasOutcome:
        return AliasOutcome(r.AliasDeleted(p.username, p.alias, False, message), None)

    owner = state.alias_owner(alias)
    if owner is None:
        return refused(f"Alias '{p.alias}' not found")
    mine = _owner_matching(state, alias, p.username)
    if mine is None:
        return refused(f"Alias '{p.alias}' belongs to user '{owner}', not '{p.username}'")
    return AliasOutcome(
        r.AliasDeleted(p.username, p.alias, True, f"Deleted alias '{p.alias}' for user '{p.username}'"),
        ev.AliasChange(now, "delete", username=mine, alias=alias),
    )


def decide_update(state: State, p: m.AliasUpdateParams, now: datetime) -> AliasOutcome:
    old, new = p.old_alias.lower(), p.new_alias.lower()

    def refused(message: str) -> AliasOutcome:
        return AliasOutcome(r.AliasUpdated(p.old_alias, p.new_alias, False, message), None)

    owner = state.alias_owner(old)
    if owner is None:
        return refused(f"Alias '{p.old_alias}' not found")
    taken = state.alias_owner(new)
    if taken is not None:
        return refused(f"Alias '{p.new_alias}' is already assigned to user '{taken}'")
    return AliasOutcome(
        r.AliasUpdated(
            p.old_alias,
            p.new_alias,
            True,
            f"Updated alias '{p.old_alias}' to '{p.new_alias}' for user '{owner}'",
        ),
        ev.AliasChange(now, "update", username=owner, alias=old, new_alias=new),
    )
