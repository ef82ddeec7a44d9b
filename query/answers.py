"""The read commands' replies, cached: the user.* reads (and alias.get, alias.find) from the
replica's read model, on the event loop; every other read from the tables, on a reader thread
(query/tables.py). Each reply (but a model read that is not one user's: alias.find) is cached
in the one ReplyCache (query/replycache.py) with what it was computed from, and served again while that
is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from userstats.query import reads
from userstats.query.model import ModelUsers, ReadModel
from userstats.query.replica import Replica
from userstats.query.replycache import Entry, ReplyCache
from userstats.query.tables import Committed
from userstats.shared import commands, requests
from userstats.shared import messages as m
from userstats.shared.settings import Settings

Read = Callable[[reads.Scope, Any], Any]

# Each table read's function, by the naming rule of query/reads (user.stats ->
# reads.users.user_stats); a declared read without its function fails here, at import.
READS: dict[str, Read] = {name: reads.read_function(name) for name in commands.TABLE_READS}


class Answers:
    def __init__(self, replica: Replica, settings: Settings, cache: ReplyCache) -> None:
        self._replica = replica
        self._settings = settings
        self._cache = cache
        self._seen_default: tuple[int, int, str] = (-1, -1, "")  # epoch, seq, domain

    # --- from the read model (event loop) ---------------------------------------------------

    def _model_domain(self, model: ReadModel) -> str:
        if self._settings.channels:
            return self._settings.default_domain
        seen = model.busiest_channel()
        return seen[0] if seen else self._settings.default_domain

    def from_model(self, model: ReadModel, req: requests.Request, key: bytes, need: int) -> bytes | None:
        """A user.* reply from the model at its sequence, or None when the reply needs the
        tables (a channel the log has not seen there: the note explaining it reads them)."""
        p = req.params
        domain = getattr(p, "domain", None) or self._model_domain(model)
        channel = getattr(p, "channel", None)
        if channel and not model.has_channel(domain, channel):
            return None
        read = reads.SOURCE_READS[req.command]
        user: str | None = getattr(p, "username", None)
        if user is None:  # not one user's rows (alias.find: one look-up by alias): not cached
            return m.ok(req.command, read(ModelUsers(model, domain), p), model.seq)
        e = self._cache.get(key)
        if (
            e is not None
            and e.epoch == -model.epoch  # apart from the tables epochs
            and e.seq >= need
            and e.domain == domain
            and model.changed.get(user.lower(), 0) <= e.seq
        ):
            reply: bytes = self._cache.hit(e)
            return reply
        data = read(ModelUsers(model, domain), p)
        reply = m.ok(req.command, data, model.seq)
        self._cache.put(key, Entry(-model.epoch, model.seq, reply, domain))
        return reply

    # --- from the tables (reader threads) ---------------------------------------------------

    async def from_tables(self, req: requests.Request, key: bytes, need: int) -> bytes:
        rep = self._replica
        e = self._cache.get(key)
        if e is not None and e.epoch == rep.epoch and e.seq >= need and e.seq == rep.db_seq:
            reply: bytes = self._cache.hit(e)
            return reply

        async def compute() -> Entry:
            epoch = rep.epoch
            seq, reply = await rep.read(self._read, req.command, req.params, need_seq=need)
            return Entry(epoch, seq, reply)

        entry = await self._cache.shared(key, max(need, rep.db_seq), compute)
        value: bytes = entry.value
        return value

    # --- on a reader thread -----------------------------------------------------------------

    def scope(self, view: Committed) -> reads.Scope:
        return reads.Scope(view.con, self._default_domain(view), view.event_us)

    def _default_domain(self, view: Committed) -> str:
        """The first configured channel's domain; with none configured, the domain of the
        busiest channel in the stream (so a bare replica answers for what it has seen)."""
        if self._settings.channels:
            return self._settings.default_domain
        epoch, seq, domain = self._seen_default
        if (epoch, seq) != (self._replica.epoch, view.seq):
            seen = reads.busiest_channel(view.con)
            domain = seen[0] if seen else self._settings.default_domain
            self._seen_default = (self._replica.epoch, view.seq, domain)
        return domain

    def _read(self, view: Committed, command: str, params: Any) -> tuple[int, bytes]:
        sc = self.scope(view)
        data = READS[command](sc, params)
        note = reads.channel_note(sc, getattr(params, "channel", None), getattr(params, "domain", None))
        return view.seq, m.ok(command, data, view.seq, note)

    def dashboard_now(self, view: Committed) -> dict[str, list[tuple[Any, ...]]]:
        """Labelled figures for /metrics."""
        return reads.dashboard(self.scope(view))
