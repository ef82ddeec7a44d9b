"""Media changes, the current media of each channel, and the votes cast on it in chat."""

from __future__ import annotations

from userstats.shared import detectors
from userstats.shared import events as ev
from userstats.shared.keys import ChannelKey, MediaChangeKey, VoteKey
from userstats.shared.projection.base import MEDIA, Rules
from userstats.shared.state import Media


class MediaRules(Rules):
    def _change_media(self, seq: int, key: ChannelKey, p: ev.MediaPayload, t: int) -> None:
        self._carried(key, MEDIA)
        media = Media(detectors.clean_title(p.title), p.type or "", p.media_id())
        self._set_current_media(key, media)
        if self.state.last_media.get(key) != media:  # only immediate repeats are suppressed
            self.state.last_media[key] = media
            self.delta.media_changes.put(
                MediaChangeKey(seq), [key.channel, key.domain, t, media.title, media.type, media.id]
            )

    def _set_current_media(self, key: ChannelKey, media: Media) -> None:
        self.state.current_media[key] = media
        self.delta.current_media.put(key, [media.title, media.type, media.id])

    def _vote(self, key: ChannelKey, name: str, text: str, t: int) -> None:
        """A chat line that votes on the channel's current media (detectors.vote_value)."""
        vote = detectors.vote_value(text)
        if vote:
            media = self.state.current_media.get(key)
            if media is not None:
                self.delta.movie_votes.put(
                    VoteKey(key.channel, key.domain, media.title, name), [media.type, media.id, vote, t]
                )
