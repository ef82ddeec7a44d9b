"""Sessions (join, leave, AFK, user lists) and the population clock of each channel."""

from __future__ import annotations

from userstats.shared import events as ev
from userstats.shared.keys import ChannelKey, CounterKey, PopulationKey, SessionKey
from userstats.shared.projection.base import ROSTER, US, Rules
from userstats.shared.schema import ACTIVITY
from userstats.shared.state import MAX_GAP_SNAPSHOTS, SERVER_USER, Session


class SessionRules(Rules):
    def _save_session(self, key: ChannelKey, name: str, s: Session, new: bool = False) -> None:
        self.delta.sessions.put(
            SessionKey(key.domain, key.channel, name),
            [s.join_us, s.is_afk, s.afk_start_us, s.afk_total_s],
            new,
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
        activity = CounterKey(ACTIVITY, name, key.channel, key.domain, "", 0)
        self.delta.counters.put(activity, [total, max(0, total - afk)])
        self.delta.sessions.delete(SessionKey(key.domain, key.channel, name))

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
        self.delta.population.put(PopulationKey(key.channel, key.domain, t), [connected, chatting])

    # --- bridge events ---------------------------------------------------------------

    def _add_user(self, seq: int, key: ChannelKey, p: ev.UserPayload, t: int) -> None:
        name = p.user()
        if not self._counted_user(seq, name):
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
