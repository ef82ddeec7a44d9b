"""Chat lines and PMs: message counts, backlog dedupe, ++ and phrase kudos; a chat line's
emotes and votes are counted by emotes.py and media.py.

No chat or PM text is kept: the backlog dedupe keeps a digest of each line, and a raw PM is
only held (without its text) until ingest's "pm" journal event counts it; ingest then
deletes the raw message from the stream (ingest/pm_erasure.py)."""

from __future__ import annotations

import hashlib

from userstats.shared import detectors
from userstats.shared import events as ev
from userstats.shared.keys import ChannelKey, DeadLetterKey, PmEraseKey, SettingKey
from userstats.shared.projection.base import HOUR_US
from userstats.shared.projection.emotes import EmoteRules
from userstats.shared.projection.media import MediaRules
from userstats.shared.projection.sessions import SessionRules
from userstats.shared.schema import (
    HOURLY_KUDOS,
    HOURLY_MESSAGES,
    MESSAGES,
    PHRASES,
    PLUSPLUS,
    PM_COUNTED_THROUGH,
    PMS,
)
from userstats.shared.state import RECENT_CHAT_PER_CHANNEL, SERVER_USER, RecentChat
from userstats.shared.subjects import EVENTS_PREFIX

PM_EVENT = "pm"  # the bridge's event name for a private message, and its journal event's kind
RAW_PM_SUBJECTS = f"{EVENTS_PREFIX}.*.{PM_EVENT}"  # every channel's raw private messages
_PM_SUFFIX = "." + PM_EVENT
_EVENTS_DOT = EVENTS_PREFIX.split(".", 1)[0] + "."  # "kryten."


def is_pm_subject(subject: str) -> bool:
    """A raw private message's subject (its text must not be kept anywhere)."""
    return subject.endswith(_PM_SUFFIX) and subject.startswith(_EVENTS_DOT)


def text_digest(text: str) -> str:
    """What recent_chat keeps of a chat line's text for backlog dedupe: not the text."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class ChatRules(SessionRules, EmoteRules, MediaRules):
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
        domain, channel = key.domain, key.channel
        counters = self.delta.counters
        self._see_user(seq, name, t)
        counters.count(MESSAGES, name, channel, domain, "", 0)
        counters.count(HOURLY_MESSAGES, "", channel, domain, "", t - t % HOUR_US)
        if name != SERVER_USER and name not in st.sessions.get(key, ()):
            self._open_session(key, name, t, False)

        kudos = self._plusplus(name, key, text) + self._phrase_kudos(name, key, text)
        if kudos:
            counters.count(HOURLY_KUDOS, "", channel, domain, "", t - t % HOUR_US, kudos)
        self._count_emotes(key, name, text)
        self._vote(key, name, text, t)

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
                self.delta.counters.count(PLUSPLUS, target, key.channel, key.domain, "", 0)
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
                self.delta.counters.count(PHRASES, target, key.channel, key.domain, phrase, 0)
        return len(given)

    def _pm(self, seq: int, p: ev.ChatPayload, t: int) -> None:
        """A raw PM changes nothing but the erase queue: ingest then appends a "pm" journal event
        (user and time, no text) and deletes the raw message from the stream. Only that event
        counts, so a replay counts the PM once whether it meets the raw message, the journal
        event or both. The raw one advances no clock and no counter for the same reason. A
        forgotten user's raw PM is not held: ingest deletes it as it deletes their other events."""
        if self._ignored(seq, p.sender()):
            return
        self.delta.pm_erase.put(PmEraseKey(seq), [p.sender(), t, "", ""])

    def _pm_dead_letter(self, seq: int, subject: str, error: str, stream_us: int) -> None:
        """A raw PM that could not be projected: held without its bytes, and a dead letter (with
        no bytes) once its journal event is projected (see _pm_redacted)."""
        self.delta.pm_erase.put(PmEraseKey(seq), ["", stream_us, subject, error[:1000]])

    def _pm_redacted(self, seq: int, e: ev.PmRedacted, t: int) -> None:
        """Counts the PM of raw seq `e.seq` once: erase_pms appends these in raw-seq order, so
        one at or below the newest counted is a repeat (an append retried after the dedupe
        window; a journal event appended again after a kill -9)."""
        self.delta.pm_erase.delete(PmEraseKey(e.seq))
        if e.username and self._ignored(seq, e.username):
            return  # forgotten: ingest deletes this event, so a replay never sees it: no trace
        st = self.state
        if e.seq <= st.pm_counted_through:
            self._count("pm_repeats")
            return
        st.pm_counted_through = e.seq
        self.delta.settings.put(SettingKey(PM_COUNTED_THROUGH), [str(e.seq)])
        if e.error:  # the raw PM was undecodable or failed: a dead letter without its bytes
            self.delta.dead_letters.put(DeadLetterKey(e.seq), [e.subject, e.error, b"", t])
            self._count("dead_letters")
            return
        self._count("events_processed")  # the raw PM's, counted here once (see _pm)
        if not e.username:  # a PM without a sender
            self._count("events_without_username")
            return
        self._see_user(e.seq, e.username, t)
        self.delta.counters.count(PMS, e.username, "", "", "", 0)
