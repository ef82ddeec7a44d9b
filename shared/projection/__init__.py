"""The projection: one stored stream message -> changes to State and to the batch's Delta.

This is the ONLY place statistics rules live. It is pure: no clock, no I/O, no randomness.
"Now" is the envelope `timestamp` of the event (or, when a message has none, the time the
stream stored it, which is part of the log). The same code runs in ingest, in a rebuild
and in every replica, so the same log always gives the same tables.

One dispatcher (dispatcher.Projector) hands each message to the rules of its concern, mixins
that share the State and the Delta (base.Rules):

    sessions.py    sessions, AFK, user lists and the population clock
    chat.py        chat and PMs: message counts, backlog dedupe (a digest, no text), kudos,
                   PMs held until their text-free journal event counts them
    emotes.py      a channel's emote set and the emotes used in chat
    media.py       media changes, current media and votes
    journal.py     settings, the bridge's KV state, aliases
    imports.py     history imported from kryten-userstats 0.7.1 (import baselines)
    forgetting.py  user.forget
"""

from userstats.shared.projection.base import DEAD_LETTERS_KEY, EMOTE_SET, HOUR_US, MEDIA, ROSTER, US
from userstats.shared.projection.chat import PM_EVENT, RAW_PM_SUBJECTS, is_pm_subject, text_digest
from userstats.shared.projection.dispatcher import CAPTURED_SUBJECTS, HANDLED_EVENTS, Projector, is_captured
from userstats.shared.projection.imports import IMPORTED_MEDIA_BASE, MAX_IMPORT_TIME_US

__all__ = [
    "CAPTURED_SUBJECTS",
    "DEAD_LETTERS_KEY",
    "EMOTE_SET",
    "HANDLED_EVENTS",
    "HOUR_US",
    "IMPORTED_MEDIA_BASE",
    "MAX_IMPORT_TIME_US",
    "MEDIA",
    "PM_EVENT",
    "RAW_PM_SUBJECTS",
    "ROSTER",
    "US",
    "Projector",
    "is_captured",
    "is_pm_subject",
    "text_digest",
]
