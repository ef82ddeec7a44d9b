"""Journal events of the service itself: settings, the bridge's KV state, alias changes."""

from __future__ import annotations

from userstats.shared import detectors
from userstats.shared import events as ev
from userstats.shared.keys import AliasKey, ChannelKey, PhraseKey, SettingKey
from userstats.shared.projection.base import EMOTE_SET, MEDIA, ROSTER
from userstats.shared.projection.emotes import EmoteRules
from userstats.shared.projection.media import MediaRules
from userstats.shared.projection.sessions import SessionRules
from userstats.shared.state import Media, ProjectionSettings


class JournalRules(SessionRules, EmoteRules, MediaRules):
    def _settings(self, e: ev.SettingsChanged) -> None:
        phrases = frozenset(p.lower() for p in e.trigger_phrases if p)
        old = self.state.settings.trigger_phrases
        for gone in old - phrases:
            self.delta.phrases.delete(PhraseKey(gone))
        for new in phrases - old:
            self.delta.phrases.put(PhraseKey(new), [])
        interval = max(1, e.population_interval_seconds)
        self.state.settings = ProjectionSettings(phrases, e.count_shadow_muted, interval)
        settings = self.delta.settings
        settings.put(SettingKey("trigger_phrases"), [ev.encode(sorted(phrases)).decode()])
        settings.put(SettingKey("count_shadow_muted"), [ev.encode(e.count_shadow_muted).decode()])
        settings.put(SettingKey("population_interval_seconds"), [str(interval)])

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
                self.delta.aliases.put(AliasKey(e.username, alias), [seq])
        elif e.action == "delete":
            alias = e.alias.lower()
            owners = aliases.get(alias)
            if owners and e.username in owners:
                del owners[e.username]
                if not owners:
                    del aliases[alias]
                self.delta.aliases.delete(AliasKey(e.username, alias))
        else:
            old, new = e.alias.lower(), e.new_alias.lower()
            owner = self.state.alias_owner(old)
            if owner is not None and new and self.state.alias_owner(new) is None:
                owners = aliases[old]
                del owners[owner]
                if not owners:
                    del aliases[old]
                self.delta.aliases.delete(AliasKey(owner, old))
                aliases.setdefault(new, {})[owner] = seq
                self.delta.aliases.put(AliasKey(owner, new), [seq])
