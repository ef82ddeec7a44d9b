"""Forgetting a user (`user.forget`): the hash that stands for the name, and who an event names.

The journal's forget event and the `forgotten_users` table hold `user_hash(name)`, never the
name, so the record that someone was forgotten does not itself keep who. The hash is of the
lower-cased name (names match case-insensitively everywhere) with a fixed prefix. It is not
secret: anyone who already has a candidate name can check it against the hash. What it avoids
is a list of forgotten names readable from the stream, the tables or a snapshot.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

import msgspec
from userstats.shared import events as ev
from userstats.shared import messages as m
from userstats.shared import replies as r
from userstats.shared.state import State
from userstats.shared.subjects import JOURNAL_PREFIX

HASH_PREFIX = "userstats-forget:"
_JOURNAL_DOT = JOURNAL_PREFIX + "."
_WORD = re.compile(r"[\w\-]+")
# Bridge events whose payload belongs to one user: the one the projection reads from them.
CHAT_EVENTS = frozenset({"chatmsg", "pm"})
USER_EVENTS = frozenset({"adduser", "userleave", "setafk", "setusermeta"})


@functools.lru_cache(maxsize=65_536)
def user_hash(name: str) -> str:
    """The hex sha256 of HASH_PREFIX + the lower-cased name (DuckDB's sha256 gives the same)."""
    return hashlib.sha256((HASH_PREFIX + name.lower()).encode()).hexdigest()


def mentions(text: str, hashes: set[str]) -> bool:
    """Whether a word of `text` (letters, digits, `_`, `-`) is a forgotten name."""
    return any(user_hash(w) in hashes for w in _WORD.findall(text))


def scrub(text: str, hashes: set[str]) -> str:
    """`text`, or its digest if it mentions a forgotten name: the recent chat lines kept for
    backlog dedupe then still match the replayed line, without keeping the name."""
    if not mentions(text, hashes):
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ForgetOutcome:
    data: r.UserForgotten
    event: ev.Forget


def decide(state: State, p: m.ForgetParams, now: datetime, request_id: str = "") -> ForgetOutcome:
    """Always appends (forgetting twice is harmless, and forgetting a name never seen keeps it
    from being counted later). `known` says whether the tables had the user."""
    h = user_hash(p.username)
    known = p.username.lower() in state.users_lower or h in state.forgotten
    data = r.UserForgotten(
        username=p.username,
        forgotten=True,
        known=known,
        already_forgotten=h in state.forgotten,
        user_hash=h,
        message=f"Forgot user '{p.username}': their rows are removed and they are no longer counted; "
        "their raw events are being deleted from the stream",
    )
    return ForgetOutcome(data, ev.Forget(now, h, request_id))


def event_names(subject: str, data: bytes) -> list[str]:
    """The names a stored message belongs to: a chat line's or PM's sender, the user of an
    addUser / userLeave / setAFK / setUserMeta, an alias change's user and aliases, a "pm"
    journal event's sender. Rosters (userlist, KV state) and imports name many users: they
    belong to none of them."""
    try:
        if subject.startswith(_JOURNAL_DOT):
            e = ev.JOURNAL_DECODER.decode(data)
            if isinstance(e, ev.AliasChange):
                return [n for n in (e.username, e.alias, e.new_alias) if n]
            if isinstance(e, ev.PmRedacted):  # the count of a PM whose raw message is erased
                return [e.username] if e.username else []
            return []
        env = ev.ENVELOPE_DECODER.decode(data)
        kind = env.event_name.lower()
        if kind in CHAT_EVENTS:
            name = ev.CHAT_DECODER.decode(env.payload).sender()
        elif kind in USER_EVENTS:
            name = ev.USER_DECODER.decode(env.payload).user()
        else:
            return []
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return words(data)  # a dead letter: any word of it may be the name
    return [name] if name else []


def words(data: bytes) -> list[str]:
    """The words of raw bytes, as the dead-letter purge (apply.purge_users) splits them."""
    return _WORD.findall(data.decode("utf-8", errors="replace"))
