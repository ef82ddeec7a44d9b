"""The emote set of each channel (emote frames) and the emotes used in chat."""

from __future__ import annotations

from userstats.shared import detectors
from userstats.shared import events as ev
from userstats.shared.keys import ChannelEmoteKey, ChannelKey
from userstats.shared.projection.base import EMOTE_SET, Rules
from userstats.shared.schema import EMOTES


class EmoteRules(Rules):
    def _count_emotes(self, key: ChannelKey, name: str, text: str) -> None:
        emotes = self.state.emotes.get(key)
        if emotes:
            counters = self.delta.counters
            for emote in detectors.emote_names(text, emotes):
                counters.count(EMOTES, name, key.channel, key.domain, emote, 0)

    def _replace_emotes(self, key: ChannelKey, names: set[str]) -> None:
        self._carried(key, EMOTE_SET)
        old = self.state.emotes.get(key, set())
        for gone in old - names:
            self.delta.channel_emotes.delete(ChannelEmoteKey(key.domain, key.channel, gone))
        for new in names - old:
            self.delta.channel_emotes.put(ChannelEmoteKey(key.domain, key.channel, new), [])
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
