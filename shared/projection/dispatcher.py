"""The dispatcher: one stored stream message -> the rule that handles it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from userstats.shared import events as ev
from userstats.shared.delta import Delta
from userstats.shared.keys import ChannelKey, CounterKey, DeadLetterKey, UserKey
from userstats.shared.projection.chat import PM_EVENT, ChatRules, is_pm_subject
from userstats.shared.projection.forgetting import ForgetRules
from userstats.shared.projection.imports import ImportRules
from userstats.shared.projection.journal import JournalRules
from userstats.shared.schema import COUNTER
from userstats.shared.state import State
from userstats.shared.subjects import EVENTS_PREFIX, JOURNAL_PREFIX, captured_subjects

_EVENTS_DOT = EVENTS_PREFIX.split(".", 1)[0] + "."  # "kryten."
_JOURNAL_DOT = JOURNAL_PREFIX + "."

# The bridge events the projection handles: lower-cased event name -> (payload decoder, method).
# The stream captures exactly these (CAPTURED_SUBJECTS), so what is stored and what is projected
# cannot drift apart: a new handler here is a new captured subject.
_HANDLERS: dict[str, tuple[msgspec.json.Decoder[Any], str]] = {
    "chatmsg": (ev.CHAT_DECODER, "_chat"),
    PM_EVENT: (ev.CHAT_DECODER, "_pm"),
    "adduser": (ev.USER_DECODER, "_add_user"),
    "userleave": (ev.USER_DECODER, "_user_leave"),
    "setafk": (ev.USER_DECODER, "_set_afk"),
    "setusermeta": (ev.USER_DECODER, "_set_user_meta"),
    "userlist": (ev.USERLIST_DECODER, "_userlist"),
    "changemedia": (ev.MEDIA_DECODER, "_change_media"),
    "emotelist": (ev.EMOTELIST_DECODER, "_emote_list"),
    "updateemote": (ev.EMOTE_DECODER, "_update_emote"),
    "removeemote": (ev.EMOTE_DECODER, "_remove_emote"),
    "renameemote": (ev.EMOTE_DECODER, "_rename_emote"),
}
HANDLED_EVENTS: tuple[str, ...] = tuple(_HANDLERS)
CAPTURED_SUBJECTS: list[str] = captured_subjects(HANDLED_EVENTS)  # the stream's config
_HANDLED = frozenset(HANDLED_EVENTS)
_EVENT_TOKENS = EVENTS_PREFIX.count(".") + 3  # kryten.events.cytube.<channel>.<event>


def is_captured(subject: str) -> bool:
    """Whether the stream stores a message published on `subject` (CAPTURED_SUBJECTS)."""
    if subject.startswith(_JOURNAL_DOT):
        return True
    tokens = subject.split(".")
    return len(tokens) == _EVENT_TOKENS and subject.startswith(_EVENTS_DOT) and tokens[-1] in _HANDLED


class Projector(ChatRules, JournalRules, ImportRules, ForgetRules):
    """Holds the State; `project()` each message in stream order, then take `delta`."""

    def __init__(self, state: State | None = None, last_seq: int = 0, last_event_us: int = 0) -> None:
        """`last_seq`/`last_event_us`: the checkpoint the State was loaded at."""
        super().__init__(state)
        self.last_seq = last_seq
        self.last_event_us = last_event_us
        self._channels: dict[tuple[str, str], ChannelKey] = {}  # each event's key, built once
        self._bridge: dict[str, tuple[msgspec.json.Decoder[Any], Callable[..., None]]] = {
            name: (decoder, getattr(self, method)) for name, (decoder, method) in _HANDLERS.items()
        }

    def take_delta(self) -> Delta:
        """The changes since the last call, ready to apply; a fresh Delta starts."""
        for key in self._dirty_chat:
            lines = [[seq, *line] for seq, line in self.state.recent_chat[key].order]
            self.delta.recent_chat.put(key, [ev.encode(lines).decode()])
        self._dirty_chat.clear()
        for name, row in self._users.items():
            self.delta.users.put(UserKey(name), row)
        self._users.clear()
        for name, n in self._counts.items():
            self.delta.counters.incr(CounterKey(COUNTER, "", "", "", name, 0), n)
        self._counts.clear()
        delta, self.delta = self.delta, Delta()
        return delta

    def pending_rows(self) -> int:
        """About how many rows take_delta() would hand over now (to bound a batch's memory)."""
        return len(self.delta) + len(self._users) + len(self._dirty_chat)

    def project(self, seq: int, subject: str, data: bytes, stream_us: int) -> None:
        """Project one stored message. Undecodable or failing ones become dead letters."""
        self.last_seq = seq
        try:
            if subject.startswith(_JOURNAL_DOT):
                self._journal(seq, ev.JOURNAL_DECODER.decode(data))
            elif subject.startswith(_EVENTS_DOT):
                self._bridge_event(seq, data, stream_us)
            else:
                raise ValueError(f"subject {subject!r} is not an event or journal subject")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:  # incl. bad UTF-8
            self._dead_letter(seq, subject, str(exc), data, stream_us)
        except Exception as exc:  # a rule that raises must not stop the log
            self._dead_letter(seq, subject, f"{type(exc).__name__}: {exc}", data, stream_us)

    def _dead_letter(self, seq: int, subject: str, error: str, data: bytes, stream_us: int) -> None:
        if is_pm_subject(subject):  # no PM text kept: the dead letter comes with its journal event
            self._pm_dead_letter(seq, subject, error, stream_us)
            return
        self.delta.dead_letters.put(DeadLetterKey(seq), [subject, error[:1000], data, stream_us])
        self._count("dead_letters")

    def _bridge_event(self, seq: int, data: bytes, stream_us: int) -> None:
        env = ev.ENVELOPE_DECODER.decode(data)
        event_name = env.event_name.lower()
        entry = self._bridge.get(event_name)
        if entry is None:
            self._count("events_ignored")
            return
        decoder, handler = entry
        try:
            payload = decoder.decode(env.payload)
        except msgspec.ValidationError as exc:  # its path is relative to the payload
            raise msgspec.ValidationError(_in_payload(str(exc))) from None
        t = ev.to_us(env.timestamp) if env.timestamp is not None else stream_us
        if event_name == PM_EVENT:  # held only: counted by its "pm" journal event (see _pm)
            handler(seq, payload, t)
            return
        self.last_event_us = max(self.last_event_us, t)
        key = self._channel(env.domain, env.channel)
        first = self._advance_clock(key, t)
        self._count("events_processed")
        handler(seq, key, payload, t)
        if first:
            self._population_row(key, t)

    def _channel(self, domain: str, channel: str) -> ChannelKey:
        """The ChannelKey of a channel, built once (a NamedTuple costs several plain tuples)."""
        key = self._channels.get((domain, channel))
        if key is None:
            key = self._channels[domain, channel] = ChannelKey(domain, channel)
        return key

    def _journal(self, seq: int, event: ev.JournalEvent) -> None:
        t = ev.to_us(event.timestamp)
        self.last_event_us = max(self.last_event_us, t)
        self._count("journal_events")
        if isinstance(event, ev.Tick):
            for key in list(self.state.clocks):
                self._advance_clock(key, t)
        elif isinstance(event, ev.SettingsChanged):
            self._settings(event)
        elif isinstance(event, ev.KvState):
            key = self._channel(event.domain, event.channel)
            first = self._advance_clock(key, t)
            self._kv_state(seq, key, event, t)
            if first:
                self._population_row(key, t)
        elif isinstance(event, ev.ImportBatch):
            self._import(seq, event)
        elif isinstance(event, ev.Forget):
            self._forget(seq, event)
        elif isinstance(event, ev.PmRedacted):
            self._pm_redacted(seq, event, t)
        else:
            self._alias(seq, event)


def _in_payload(error: str) -> str:
    """msgspec's path in an envelope's payload, as a path in the whole envelope."""
    if " - at `$" in error:
        return error.replace(" - at `$", " - at `$.payload", 1)
    return f"{error} - at `$.payload`"
