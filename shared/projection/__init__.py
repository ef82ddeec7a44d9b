"""The projection: one stored stream message -> changes to State and to the batch's Delta.

This is the ONLY place statistics rules live. It is pure: no clock, no I/O, no randomness.
"Now" is the envelope `timestamp` of the event (or, when a message has none, the time the
stream stored it, which is part of the log). The same code runs in ingest, in a rebuild
and in every replica, so the same log always gives the same tables.

One dispatcher (dispatcher.Projector) hands each message to the rules of its concern, mixins
that share the State and the Delta (base.Rules):

    sessions.py    sessions, AFK, user lists and the population clock
    chat.py        chat and PMs: message counts, backlog dedupe, kudos
    emotes.py      a channel's emote set and the emotes used in chat
    media.py       media changes, current media and votes
    journal.py     settings, the bridge's KV state, aliases
    imports.py     history imported from kryten-userstats 0.7.1 (import baselines)
    forgetting.py  user.forget
"""

from userstats.shared.projection.base import DEAD_LETTERS_KEY, EMOTE_SET, HOUR_US, MEDIA, ROSTER, US
from userstats.shared.projection.dispatcher import Projector
from userstats.shared.projection.imports import IMPORTED_MEDIA_BASE, MAX_IMPORT_TIME_US

__all__ = [
    "DEAD_LETTERS_KEY",
    "EMOTE_SET",
    "HOUR_US",
    "IMPORTED_MEDIA_BASE",
    "MAX_IMPORT_TIME_US",
    "MEDIA",
    "ROSTER",
    "US",
    "Projector",
]
