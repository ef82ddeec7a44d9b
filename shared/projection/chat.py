"""Chat lines and PMs: message counts, backlog dedupe, ++ and phrase kudos; a chat line's
emotes and votes are counted by emotes.py and media.py."""

from __future__ import annotations

from userstats.shared import detectors, forget
from userstats.shared import events as ev
from userstats.shared.keys import ChannelKey
from userstats.shared.projection.base import HOUR_US
from userstats.shared.projection.emotes import EmoteRules
from userstats.shared.projection.media import MediaRules
from userstats.shared.projection.sessions import SessionRules
from userstats.shared.schema import HOURLY_KUDOS, HOURLY_MESSAGES, MESSAGES, PHRASES, PLUSPLUS, PMS
from userstats.shared.state import RECENT_CHAT_PER_CHANNEL, SERVER_USER, RecentChat


class ChatRules(SessionRules, EmoteRules, MediaRules):
    def _chat(self, seq: int, key: ChannelKey, p: ev.ChatPayload, t: int) -> None:
        name = p.sender()
        if not self._counted_user(seq, name):
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
        line = (name, time_ms, forget.scrub(text, self.state.forgotten) if self.state.forgotten else text)
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

    def _pm(self, seq: int, key: ChannelKey, p: ev.ChatPayload, t: int) -> None:
        name = p.sender()
        if not self._counted_user(seq, name):
            return
        self._see_user(seq, name, t)
        self.delta.counters.count(PMS, name, "", "", "", 0)
