"""The projection: one stored stream message -> changes to State and to the batch's Delta.

This is the ONLY place statistics rules live. It is pure: no clock, no I/O, no randomness.
"Now" is the envelope `timestamp` of the event (or, when a message has none, the time the
stream stored it, which is part of the log). The same code runs in ingest, in a rebuild
and in every replica, so the same log always gives the same tables.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from userstats.shared import detectors, forget
from userstats.shared import events as ev
from userstats.shared.delta import Delta
from userstats.shared.schema import (
    ACTIVITY,
    BASELINE_SEP,
    COUNTER,
    EMOTES,
    HOURLY_KUDOS,
    HOURLY_MESSAGES,
    MESSAGES,
    PHRASES,
    PLUSPLUS,
    PM_COUNTED_THROUGH,
    PMS,
)
from userstats.shared.state import (
    MAX_GAP_SNAPSHOTS,
    RECENT_CHAT_PER_CHANNEL,
    SERVER_USER,
    ChannelKey,
    Media,
    ProjectionSettings,
    RecentChat,
    Session,
    State,
)
from userstats.shared.subjects import EVENTS_PREFIX, JOURNAL_PREFIX, JOURNAL_WILDCARD

US = 1_000_000
# Imported media rows sort before every live row (keys are stream seqs, all positive) and
# among themselves by time: IMPORTED_MEDIA_BASE + time_us * 64 + row_id % 64.
IMPORTED_MEDIA_BASE = -(2**62)
MAX_IMPORT_TIME_US = 2**52  # year 2112; keeps the keys above negative overflow
DEAD_LETTERS_KEY = (COUNTER, "", "", "", "dead_letters", 0)
HOUR_US = 3600 * US

_EVENTS_DOT = EVENTS_PREFIX.split(".", 1)[0] + "."  # "kryten."
# Parts of a channel's state a kvstate event can fill in (schema.CHANNEL_PARTS), each carried
# in full by one kind of bridge frame: userlist, any emote frame, changeMedia.
ROSTER, EMOTE_SET, MEDIA = "roster", "emotes", "media"
_JOURNAL_DOT = JOURNAL_PREFIX + "."
PM_EVENT = "pm"

# The bridge events the projection handles: lower-cased event name -> (payload decoder, method).
# The stream captures exactly these (STREAM_SUBJECTS), so what is stored and what is projected
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
# kryten.events.cytube.*.<event> for each handled event (the bridge lower-cases the event name
# into the subject, and its channel token has no dots), plus ingest's own journal.
STREAM_SUBJECTS: list[str] = [
    *(f"{EVENTS_PREFIX}.*.{name}" for name in HANDLED_EVENTS),
    JOURNAL_WILDCARD,
]
_PM_SUFFIX = "." + PM_EVENT
RAW_PM_SUBJECTS = f"{EVENTS_PREFIX}.*.{PM_EVENT}"  # every channel's raw private messages
_HANDLED = frozenset(HANDLED_EVENTS)
_EVENT_TOKENS = EVENTS_PREFIX.count(".") + 3  # kryten.events.cytube.<channel>.<event>


def is_captured(subject: str) -> bool:
    """Whether the stream stores a message published on `subject` (STREAM_SUBJECTS)."""
    if subject.startswith(_JOURNAL_DOT):
        return True
    tokens = subject.split(".")
    return len(tokens) == _EVENT_TOKENS and subject.startswith(_EVENTS_DOT) and tokens[-1] in _HANDLED


def is_pm_subject(subject: str) -> bool:
    """A raw private message's subject (its text must not be kept anywhere)."""
    return subject.endswith(_PM_SUFFIX) and subject.startswith(_EVENTS_DOT)


def text_digest(text: str) -> str:
    """What recent_chat keeps of a chat line's text for backlog dedupe: not the text."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class Projector:
    """Holds the State; `project()` each message in stream order, then take `delta`."""

    def __init__(self, state: State | None = None, last_seq: int = 0, last_event_us: int = 0) -> None:
        """`last_seq`/`last_event_us`: the checkpoint the State was loaded at."""
        self.state = state if state is not None else State()
        self.delta = Delta()
        self.last_seq = last_seq
        self.last_event_us = last_event_us
        self._dirty_chat: set[ChannelKey] = set()
        self._counts: dict[str, int] = {}
        self._users: dict[str, list[int]] = {}  # this batch's users rows (merged as USERS says)
        self._bridge: dict[str, tuple[msgspec.json.Decoder[Any], Callable[..., None]]] = {
            name: (decoder, getattr(self, method)) for name, (decoder, method) in _HANDLERS.items()
        }

    # --- entry points ------------------------------------------------------------------

    def take_delta(self) -> Delta:
        """The changes since the last call, ready to apply; a fresh Delta starts."""
        for key in self._dirty_chat:
            lines = [[seq, *line] for seq, line in self.state.recent_chat[key].order]
            self.delta.recent_chat.put(key, [ev.encode(lines).decode()])
        self._dirty_chat.clear()
        for name, row in self._users.items():
            self.delta.users.put((name,), row)
        self._users.clear()
        for name, n in self._counts.items():
            self.delta.counters.incr((COUNTER, "", "", "", name, 0), n)
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
            self.delta.pm_erase.put((seq,), ["", stream_us, subject, error[:1000]])
            return
        self.delta.dead_letters.put((seq,), [subject, error[:1000], data, stream_us])
        self._count("dead_letters")

    def _count(self, name: str, n: int = 1) -> None:
        """Bookkeeping counters, summed in memory and put into the delta by take_delta."""
        self._counts[name] = self._counts.get(name, 0) + n

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
        key = (env.domain, env.channel)
        first = self._advance_clock(key, t)
        self._count("events_processed")
        handler(seq, key, payload, t)
        if first:
            self._population_row(key, t)

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
            key = (event.domain, event.channel)
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

    # --- users, sessions, population -------------------------------------------------

    def _see_user(self, seq: int, name: str, t: int) -> None:
        row = self._users.get(name)
        if row is None:
            self._users[name] = [t, t, seq]
        else:  # first_seen and first_seq only go down, last_seen only up (as USERS merges them)
            if t > row[1]:
                row[1] = t
            elif t < row[0]:
                row[0] = t
            row[2] = min(row[2], seq)  # a PM is seen at its journal event, with the raw PM's seq
        low = name.lower()
        if low not in self.state.users_lower:
            self.state.users_lower[low] = name

    def _save_session(self, key: ChannelKey, name: str, s: Session, new: bool = False) -> None:
        self.delta.sessions.put(
            (key[0], key[1], name), [s.join_us, s.is_afk, s.afk_start_us, s.afk_total_s], new
        )

    def _open_session(self, key: ChannelKey, name: str, t: int, afk: bool) -> Session | None:
        """Start a session unless one is open; `[server]` never gets one."""
        if name == SERVER_USER:
            return None
        chan = self.state.sessions.setdefault(key, {})
        s = chan.get(name)
        if s is None:
            s = Session(t, afk, t if afk else 0, 0)
            chan[name] = s
            if afk:
                self.state.afk_count[key] = self.state.afk_count.get(key, 0) + 1
            self._save_session(key, name, s, new=True)
        return s

    def _set_afk_state(self, key: ChannelKey, name: str, s: Session, afk: bool, t: int) -> None:
        if afk == s.is_afk:
            return
        if afk:
            s.is_afk, s.afk_start_us = True, t
            self.state.afk_count[key] = self.state.afk_count.get(key, 0) + 1
        else:
            s.afk_total_s += max(0, t - s.afk_start_us) // US
            s.is_afk, s.afk_start_us = False, 0
            self.state.afk_count[key] -= 1
        self._save_session(key, name, s)

    def _close_session(self, key: ChannelKey, name: str, t: int) -> None:
        chan = self.state.sessions.get(key)
        s = chan.pop(name, None) if chan else None
        if s is None:
            return
        total = max(0, t - s.join_us) // US
        afk = s.afk_total_s
        if s.is_afk:
            afk += max(0, t - s.afk_start_us) // US
            self.state.afk_count[key] -= 1
        self.delta.counters.put((ACTIVITY, name, key[1], key[0], "", 0), [total, max(0, total - afk)])
        self.delta.sessions.delete((key[0], key[1], name))

    def _reconcile_present(self, seq: int, key: ChannelKey, present: dict[str, bool], t: int) -> None:
        """A full user list: close sessions of the absent, open or update the present."""
        for name in [n for n in self.state.sessions.get(key, {}) if n not in present]:
            self._close_session(key, name, t)
        for name, afk in sorted(present.items()):  # ties in first_seq: load_state sorts too
            self._see_user(seq, name, t)
            s = self._open_session(key, name, t, afk)
            if s is not None:
                self._set_afk_state(key, name, s, afk, t)

    def _advance_clock(self, key: ChannelKey, t: int) -> bool:
        """Record one population row per interval boundary crossed in this channel's time.

        True for the channel's first event: the caller then records its first row, after
        the event (see _population_row)."""
        step = self.state.settings.population_interval_seconds * US
        boundary = t - t % step
        last = self.state.clocks.get(key)
        if last is not None and boundary <= last:
            return False
        self.state.clocks[key] = boundary
        self.delta.clock.put(key, [boundary])
        if last is None:
            return True
        first = max(last + step, boundary - (MAX_GAP_SNAPSHOTS - 1) * step)
        for b in range(first, boundary + 1, step):
            self._population_row(key, b)
        return False

    def _population_row(self, key: ChannelKey, t: int) -> None:
        """The population at `t`. Rows fall on interval boundaries, plus one at a channel's
        first event, so a new channel has a population (and watermarks, and an hourly
        average) from its first event on, not only from the next boundary."""
        connected = len(self.state.sessions.get(key, ()))
        chatting = connected - self.state.afk_count.get(key, 0)
        self.delta.population.put((key[1], key[0], t), [connected, chatting])

    # --- bridge events ---------------------------------------------------------------

    def _chat(self, seq: int, key: ChannelKey, p: ev.ChatPayload, t: int) -> None:
        name = p.sender()
        if not name:
            self._count("events_without_username")
            return
        if self._ignored(seq, name):
            return
        st = self.state
        if p.is_shadow() and not st.settings.count_shadow_muted:
            self._count("chat_shadow_ignored")
            return
        text = p.text()
        if p.time and self._seen_before(seq, key, name, int(p.time), text):
            self._count("chat_backlog_duplicates")
            return
        domain, channel = key
        d = self.delta
        self._see_user(seq, name, t)
        d.counters.incr((MESSAGES, name, channel, domain, "", 0))
        d.counters.incr((HOURLY_MESSAGES, "", channel, domain, "", t - t % HOUR_US))
        if name != SERVER_USER and name not in st.sessions.get(key, ()):
            self._open_session(key, name, t, False)

        kudos = self._plusplus(name, key, text) + self._phrase_kudos(name, key, text)
        if kudos:
            d.counters.incr((HOURLY_KUDOS, "", channel, domain, "", t - t % HOUR_US), kudos)
        emotes = st.emotes.get(key)
        if emotes:
            for emote in detectors.emote_names(text, emotes):
                d.counters.incr((EMOTES, name, channel, domain, emote, 0))
        vote = detectors.vote_value(text)
        if vote:
            media = st.current_media.get(key)
            if media is not None:
                d.movie_votes.put((channel, domain, media.title, name), [media.type, media.id, vote, t])

    def _seen_before(self, seq: int, key: ChannelKey, name: str, time_ms: int, text: str) -> bool:
        """Bridge-restart backlog dedupe on (domain, channel, username, payload time, text)."""
        recent = self.state.recent_chat.get(key)
        if recent is None:
            recent = self.state.recent_chat[key] = RecentChat()
        line = (name, time_ms, text_digest(text))
        if line in recent.keys:
            return True
        recent.keys[line] = seq
        recent.order.append((seq, line))
        self._dirty_chat.add(key)
        if len(recent.order) > RECENT_CHAT_PER_CHANNEL:
            old_seq, old_line = recent.order.popleft()
            if recent.keys.get(old_line) == old_seq:
                del recent.keys[old_line]
        return False

    def _resolve(self, candidate: str, sender_lower: str) -> str | None:
        """Spec 3.7: alias, self-kudos block, existence check with the stored spelling."""
        owner = self.state.alias_owner(candidate.lower())
        name = owner if owner is not None else candidate
        low = name.lower()
        if low == sender_lower:
            return None
        return self.state.users_lower.get(low)

    def _plusplus(self, sender: str, key: ChannelKey, text: str) -> int:
        targets = detectors.plusplus_targets(text)
        if not targets:
            return 0
        sender_lower = sender.lower()
        given: set[str] = set()
        for cand in targets:
            target = self._resolve(cand, sender_lower)
            if target is not None and target not in given:  # once per (target, message)
                given.add(target)
                self.delta.counters.incr((PLUSPLUS, target, key[1], key[0], "", 0))
        return len(given)

    def _phrase_kudos(self, sender: str, key: ChannelKey, text: str) -> int:
        pairs = detectors.phrase_pairs(text, self.state.settings.trigger_phrases)
        if not pairs:
            return 0
        sender_lower = sender.lower()
        given: set[tuple[str, str]] = set()
        for cand, phrase in pairs:
            target = self._resolve(cand, sender_lower)
            if target is not None and (target, phrase) not in given:  # once per (target, phrase)
                given.add((target, phrase))
                self.delta.counters.incr((PHRASES, target, key[1], key[0], phrase, 0))
        return len(given)

    def _pm(self, seq: int, p: ev.ChatPayload, t: int) -> None:
        """A raw PM changes nothing but the erase queue: ingest then appends a "pm" journal event
        (user and time, no text) and deletes the raw message from the stream. Only that event
        counts, so a replay counts the PM once whether it meets the raw message, the journal
        event or both. The raw one advances no clock and no counter for the same reason. A
        forgotten user's raw PM is not held: ingest deletes it as it deletes their other events."""
        if self._ignored(seq, p.sender()):
            return
        self.delta.pm_erase.put((seq,), [p.sender(), t, "", ""])

    def _pm_redacted(self, seq: int, e: ev.PmRedacted, t: int) -> None:
        """Counts the PM of raw seq `e.seq` once: erase_pms appends these in raw-seq order, so
        one at or below the newest counted is a repeat (an append retried after the dedupe
        window; a journal event appended again after a kill -9)."""
        self.delta.pm_erase.delete((e.seq,))
        if e.username and self._ignored(seq, e.username):
            return  # forgotten: ingest deletes this event, so a replay never sees it: no trace
        st = self.state
        if e.seq <= st.pm_counted_through:
            self._count("pm_repeats")
            return
        st.pm_counted_through = e.seq
        self.delta.settings.put((PM_COUNTED_THROUGH,), [str(e.seq)])
        if e.error:  # the raw PM was undecodable or failed: a dead letter without its bytes
            self.delta.dead_letters.put((e.seq,), [e.subject, e.error, b"", t])
            self._count("dead_letters")
            return
        self._count("events_processed")  # the raw PM's, counted here once (see _pm)
        if not e.username:  # a PM without a sender
            return
        self._see_user(e.seq, e.username, t)
        self.delta.counters.incr((PMS, e.username, "", "", "", 0))

    def _add_user(self, seq: int, key: ChannelKey, p: ev.UserPayload, t: int) -> None:
        name = p.user()
        if not name:
            self._count("events_without_username")
            return
        if self._ignored(seq, name):
            return
        self._see_user(seq, name, t)
        self._open_session(key, name, t, p.meta_afk())

    def _user_leave(self, seq: int, key: ChannelKey, p: ev.UserPayload, t: int) -> None:
        if not self._ignored(seq, p.user()):
            self._close_session(key, p.user(), t)

    def _set_afk(self, seq: int, key: ChannelKey, p: ev.UserPayload, t: int) -> None:
        if not self._ignored(seq, p.user()):
            self._apply_afk(key, p.user(), bool(p.afk), t)

    def _set_user_meta(self, seq: int, key: ChannelKey, p: ev.UserPayload, t: int) -> None:
        """CyTube's current frame for AFK and mute state (it still sends setAFK as well, so
        both arrive for one change and the second changes nothing). Mute flags, `smuted`
        included, change nothing here: a muted user is still present (README)."""
        afk = p.meta_flag("afk")
        if afk is None:
            if not p.user():
                self._count("events_without_username")
            else:
                self._ignored(seq, p.user())
            return
        if not self._ignored(seq, p.user()):
            self._apply_afk(key, p.user(), afk, t)

    def _apply_afk(self, key: ChannelKey, name: str, afk: bool, t: int) -> None:
        if not name:
            self._count("events_without_username")
            return
        s = self._open_session(key, name, t, False)
        if s is not None:
            self._set_afk_state(key, name, s, afk, t)

    def _userlist(self, seq: int, key: ChannelKey, p: list[ev.UserPayload], t: int) -> None:
        self._carried(key, ROSTER)
        present = {u.user(): u.meta_afk() for u in p if u.user() and not self._forgot(u.user())}
        self._reconcile_present(seq, key, present, t)

    def _change_media(self, seq: int, key: ChannelKey, p: ev.MediaPayload, t: int) -> None:
        self._carried(key, MEDIA)
        media = Media(detectors.clean_title(p.title), p.type or "", p.media_id())
        self._set_current_media(key, media)
        if self.state.last_media.get(key) != media:  # only immediate repeats are suppressed
            self.state.last_media[key] = media
            self.delta.media_changes.put((seq,), [key[1], key[0], t, media.title, media.type, media.id])

    def _set_current_media(self, key: ChannelKey, media: Media) -> None:
        self.state.current_media[key] = media
        self.delta.current_media.put(key, [media.title, media.type, media.id])

    # --- emotes (per domain and channel) ----------------------------------------------

    def _replace_emotes(self, key: ChannelKey, names: set[str]) -> None:
        self._carried(key, EMOTE_SET)
        old = self.state.emotes.get(key, set())
        for gone in old - names:
            self.delta.channel_emotes.delete((key[0], key[1], gone))
        for new in names - old:
            self.delta.channel_emotes.put((key[0], key[1], new), [])
        self.state.emotes[key] = names

    def _emote_list(self, seq: int, key: ChannelKey, p: list[object] | dict[str, object], t: int) -> None:
        raw = list(p) if isinstance(p, dict) else [e.get("name") for e in p if isinstance(e, dict)]
        names = {detectors.normalize_emote(n) for n in raw if isinstance(n, str)}
        names.discard("")
        self._replace_emotes(key, names)

    def _update_emote(self, seq: int, key: ChannelKey, p: ev.EmotePayload, t: int) -> None:
        if p.name:
            self._replace_emotes(key, self.state.emotes.get(key, set()) | {detectors.normalize_emote(p.name)})

    def _remove_emote(self, seq: int, key: ChannelKey, p: ev.EmotePayload, t: int) -> None:
        if p.name:
            self._replace_emotes(key, self.state.emotes.get(key, set()) - {detectors.normalize_emote(p.name)})

    def _rename_emote(self, seq: int, key: ChannelKey, p: ev.EmotePayload, t: int) -> None:
        names = set(self.state.emotes.get(key, set()))
        if p.old:
            names.discard(detectors.normalize_emote(p.old))
        if p.name:
            names.add(detectors.normalize_emote(p.name))
        self._replace_emotes(key, names)

    # --- journal events ----------------------------------------------------------------

    def _settings(self, e: ev.SettingsChanged) -> None:
        phrases = frozenset(p.lower() for p in e.trigger_phrases if p)
        old = self.state.settings.trigger_phrases
        for gone in old - phrases:
            self.delta.phrases.delete((gone,))
        for new in phrases - old:
            self.delta.phrases.put((new,), [])
        interval = max(1, e.population_interval_seconds)
        self.state.settings = ProjectionSettings(phrases, e.count_shadow_muted, interval)
        self.delta.settings.put(("trigger_phrases",), [ev.encode(sorted(phrases)).decode()])
        self.delta.settings.put(("count_shadow_muted",), [ev.encode(e.count_shadow_muted).decode()])
        self.delta.settings.put(("population_interval_seconds",), [str(interval)])

    def _carried(self, key: ChannelKey, part: str) -> bool:
        """Record that the log now carries `part` of the channel; False if it already did."""
        entry = (key[0], key[1], part)
        if entry in self.state.known:
            return False
        self.state.known.add(entry)
        self.delta.parts.put(entry, [])
        return True

    def _kv_state(self, seq: int, key: ChannelKey, e: ev.KvState, t: int) -> None:
        """The bridge's KV is lossy (no renameEmote or setUserMeta handler; setUserRank drops a
        user's meta), so it never overrides the stream: each part fills in only while the log
        carries nothing of it for this channel (the first start on an empty stream, or a
        stream created after the bridge had joined), and then never again. The roster part
        only opens sessions: it never closes one or changes an AFK state the stream set."""
        if e.users is not None and self._fill(key, ROSTER):
            chan = self.state.sessions.get(key, {})
            present = {u.user(): u.meta_afk() for u in e.users if u.user() and not self._forgot(u.user())}
            for name, afk in sorted(present.items()):
                if name not in chan:
                    self._see_user(seq, name, t)
                    self._open_session(key, name, t, afk)
        if e.emotes is not None and self._fill(key, EMOTE_SET):
            names = {detectors.normalize_emote(n) for n in e.emotes}
            names.discard("")
            self._replace_emotes(key, names)
        if e.current_media is not None and self._fill(key, MEDIA):
            m = e.current_media
            self._set_current_media(key, Media(detectors.clean_title(m.title), m.type, m.id))

    def _fill(self, key: ChannelKey, part: str) -> bool:
        if self._carried(key, part):
            self._count("kvstate_parts_filled")
            return True
        self._count("kvstate_parts_ignored")
        return False

    def _alias(self, seq: int, e: ev.AliasChange) -> None:
        aliases = self.state.aliases
        if self.state.forgotten and any(self._forgot(n) for n in (e.username, e.alias, e.new_alias) if n):
            self._ignored(seq, e.username or e.alias)
            return
        if e.action == "add":
            alias = e.alias.lower()
            if alias and e.username and self.state.alias_owner(alias) is None:
                aliases.setdefault(alias, {})[e.username] = seq
                self.delta.aliases.put((e.username, alias), [seq])
        elif e.action == "delete":
            alias = e.alias.lower()
            owners = aliases.get(alias)
            if owners and e.username in owners:
                del owners[e.username]
                if not owners:
                    del aliases[alias]
                self.delta.aliases.delete((e.username, alias))
        else:
            old, new = e.alias.lower(), e.new_alias.lower()
            owner = self.state.alias_owner(old)
            if owner is not None and new and self.state.alias_owner(new) is None:
                owners = aliases[old]
                del owners[owner]
                if not owners:
                    del aliases[old]
                self.delta.aliases.delete((owner, old))
                aliases.setdefault(new, {})[owner] = seq
                self.delta.aliases.put((owner, new), [seq])

    # --- forgetting a user (user.forget) --------------------------------------------------

    def _forgot(self, name: str) -> bool:
        forgotten = self.state.forgotten
        return bool(forgotten) and forget.user_hash(name) in forgotten

    def _ignored(self, seq: int, name: str) -> bool:
        """True for an event of a forgotten user: not counted, and (in ingest) deleted."""
        if not self._forgot(name):
            return False
        self._count("events_forgotten")
        self.delta.forgotten_seqs.append(seq)
        return True

    def _forget(self, seq: int, e: ev.Forget) -> None:
        """Remove every row naming the user (apply purges the tables by hash, here the State
        and this batch's pending rows), and from now on ignore the user."""
        h = e.user_hash
        st = self.state
        hashes = {h}
        hit = forget.user_hash
        st.forgotten.add(h)
        self.delta.forgotten.put((h,), [seq])
        self.delta.forget.add(h)
        for low in [n for n in st.users_lower if hit(n) == h]:
            del st.users_lower[low]
        for alias in list(st.aliases):
            owners = st.aliases[alias]
            if hit(alias) == h:
                del st.aliases[alias]
                continue
            for owner in [o for o in owners if hit(o) == h]:
                del owners[owner]
            if not owners:
                del st.aliases[alias]
        for key, chan in st.sessions.items():
            for name in [n for n in chan if hit(n) == h]:
                if chan.pop(name).is_afk:
                    st.afk_count[key] -= 1
        for key, recent in st.recent_chat.items():  # the user's lines go, others' lose the name
            kept = [
                (s, (line[0], line[1], forget.scrub(line[2], hashes)))
                for s, line in recent.order
                if hit(line[0]) != h
            ]
            if kept != list(recent.order):
                recent.order = deque(kept)
                recent.keys = {line: s for s, line in kept}
                self._dirty_chat.add(key)
        for base_key in [k for k in st.baselines if hit(k.split(BASELINE_SEP)[2]) == h]:
            del st.baselines[base_key]
            self.delta.baselines.upserts.pop((base_key,), None)
        for name in [n for n in self._users if hit(n) == h]:
            del self._users[name]
        dead = self.delta.dead_letters
        for k in [k for k, v in dead.upserts.items() if any(hit(w) == h for w in forget.words(v[2]))]:
            dead.delete(k)
        held = self.delta.pm_erase  # raw PMs of this batch not yet counted: never counted now
        for k in [k for k, v in held.upserts.items() if v[0] and hit(v[0]) == h]:
            held.delete(k)
        for table, positions in _NAME_KEYS.items():
            td = self.delta.tables[table]
            for k in [k for k in td.upserts if any(k[i] and hit(k[i]) == h for i in positions)]:
                td.delete(k)  # a row of this batch; the purge deletes what the tables hold
        self._count("users_forgotten")

    # --- history imported from kryten-userstats 0.7.1 ------------------------------------

    def _import(self, seq: int, e: ev.ImportBatch) -> None:
        _validate_import(e)  # before any change, so a bad batch is a dead letter and nothing else
        if self.state.forgotten:
            e = _without_forgotten(e, self._forgot)
        d = self.delta
        for u in sorted(e.users, key=lambda u: u.username):  # as load_state orders ties
            row = self._users.get(u.username)
            if row is None:
                self._users[u.username] = [u.first_seen_us, u.last_seen_us, seq]
            else:
                row[0], row[1] = min(row[0], u.first_seen_us), max(row[1], u.last_seen_us)
            self.state.users_lower.setdefault(u.username.lower(), u.username)
        baselines = self.state.baselines
        for c in e.counts:
            base_key = BASELINE_SEP.join((e.source, c.kind, c.username, c.channel, c.domain, c.item))
            old = baselines.get(base_key)
            if old == (c.n1, c.n2):
                continue
            old1, old2 = old or (0, 0)
            baselines[base_key] = (c.n1, c.n2)
            d.baselines.put((base_key,), [c.n1, c.n2])
            d.counters.put((c.kind, c.username, c.channel, c.domain, c.item, 0), [c.n1 - old1, c.n2 - old2])
        for m in e.media:
            key = IMPORTED_MEDIA_BASE + m.time_us * 64 + m.row_id % 64
            d.media_changes.put((key,), [m.channel, m.domain, m.time_us, m.title, m.media_type, m.media_id])
        for p in e.population:
            d.population.put((p.channel, p.domain, p.time_us), [p.connected, p.chatting])
        for v in e.votes:
            d.movie_votes.put(
                (v.channel, v.domain, v.title, v.username), [v.media_type, v.media_id, v.vote, v.time_us]
            )
        for a in e.aliases:
            alias = a.alias.lower()
            if not alias or not a.username:
                continue
            owners = self.state.aliases.setdefault(alias, {})
            if a.username not in owners:
                owners[a.username] = seq
                d.aliases.put((a.username, alias), [seq])
        rows = len(e.users) + len(e.counts) + len(e.media) + len(e.population) + len(e.votes) + len(e.aliases)
        self._count("imported_rows", rows)


# The key positions holding a username, per table (what a forget removes from a pending batch).
_NAME_KEYS: dict[str, tuple[int, ...]] = {
    "users": (0,),
    "counters": (1,),
    "movie_votes": (3,),
    "user_aliases": (0, 1),
    "open_sessions": (2,),
}


def _without_forgotten(e: ev.ImportBatch, forgot: Callable[[str], bool]) -> ev.ImportBatch:
    """An import batch without the rows of forgotten users."""
    return msgspec.structs.replace(
        e,
        users=[u for u in e.users if not forgot(u.username)],
        counts=[c for c in e.counts if not (c.username and forgot(c.username))],
        votes=[v for v in e.votes if not forgot(v.username)],
        aliases=[a for a in e.aliases if not forgot(a.username) and not forgot(a.alias)],
    )


def _in_payload(error: str) -> str:
    """msgspec's path in an envelope's payload, as a path in the whole envelope."""
    if " - at `$" in error:
        return error.replace(" - at `$", " - at `$.payload", 1)
    return f"{error} - at `$.payload`"


def _validate_import(e: ev.ImportBatch) -> None:
    times = [
        *(t for u in e.users for t in (u.first_seen_us, u.last_seen_us)),
        *(m.time_us for m in e.media),
        *(p.time_us for p in e.population),
        *(v.time_us for v in e.votes),
    ]
    for us in times:
        if not 0 <= us < MAX_IMPORT_TIME_US:
            raise ValueError(f"imported time {us} us is outside 1970..2112")
    for c in e.counts:
        if c.n1 < 0 or c.n2 < 0:
            raise ValueError(f"negative count in imported row {c}")
    for v in e.votes:
        if v.vote not in (1, -1):
            raise ValueError(f"imported vote must be 1 or -1, not {v.vote}")
    for p in e.population:
        if p.connected < 0 or p.chatting < 0:
            raise ValueError(f"negative population in imported row {p}")
