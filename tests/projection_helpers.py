"""Building event logs by hand and projecting them into a real (in-memory) DuckDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
from userstats.shared import apply, schema
from userstats.shared import events as ev
from userstats.shared.batch import AT_END, BatchRunner
from userstats.shared.delta import Delta
from userstats.shared.projection import Projector
from userstats.shared.subjects import event_subject, journal_subject

T0 = datetime(2025, 12, 5, 17, 0, 0, tzinfo=UTC)
DOMAIN = "cytu.be"
CHANNEL = "420Grindhouse"


class Log:
    """An event log under construction: (subject, bytes, stream time in us)."""

    def __init__(self, base: datetime = T0) -> None:
        self.messages: list[tuple[str, bytes, int]] = []
        self.base = base
        self.now = base
        self._chat_serial = 0  # CyTube's chat `time`: distinct per line unless a test says otherwise

    def at(self, seconds: float) -> Log:
        self.now = self.base + timedelta(seconds=seconds)
        return self

    def event(self, name: str, payload: Any, channel: str = CHANNEL, domain: str = DOMAIN) -> Log:
        env = {
            "event_name": name,
            "payload": payload,
            "channel": channel,
            "domain": domain,
            "timestamp": self.now.isoformat(),
            "correlation_id": "00000000-0000-4000-8000-000000000000",
        }
        self.messages.append((event_subject(channel, name), ev.encode(env), ev.to_us(self.now)))
        return self

    def pm(self, payload: Any, channel: str = CHANNEL) -> Log:
        """A raw PM and the "pm" journal event ingest appends for it (which is what counts it).

        Only for logs projected directly: the journal event names the raw PM's position in
        this log as its seq. Tests that publish a log to a live ingest use event("pm", ...)."""
        self.event("pm", payload, channel)
        sender = ev.CHAT_DECODER.decode(ev.encode(payload)).sender()
        return self.journal(ev.PmRedacted(timestamp=self.now, seq=len(self.messages), username=sender))

    def raw(self, subject: str, data: bytes) -> Log:
        self.messages.append((subject, data, ev.to_us(self.now)))
        return self

    def journal(self, event: ev.JournalEvent) -> Log:
        self.messages.append((journal_subject(ev.journal_kind(event)), ev.encode(event), ev.to_us(self.now)))
        return self

    def chat(
        self, user: str, msg: str, channel: str = CHANNEL, time_ms: int | None = None, **extra: Any
    ) -> Log:
        self._chat_serial += 1
        t = time_ms if time_ms is not None else ev.to_us(self.now) // 1000 + self._chat_serial
        return self.event("chatMsg", {"username": user, "msg": msg, "meta": {}, "time": t, **extra}, channel)

    def join(self, user: str, channel: str = CHANNEL, afk: bool = False) -> Log:
        return self.event("addUser", {"name": user, "rank": 1, "meta": {"afk": afk}}, channel)

    def leave(self, user: str, channel: str = CHANNEL) -> Log:
        return self.event("userLeave", {"name": user}, channel)

    def afk(self, user: str, afk: bool, channel: str = CHANNEL) -> Log:
        return self.event("setAFK", {"name": user, "afk": afk}, channel)

    def media(self, title: str, mid: str = "id1", mtype: str = "fi", channel: str = CHANNEL) -> Log:
        return self.event("changeMedia", {"id": mid, "title": title, "type": mtype, "seconds": 60}, channel)

    def emotes(self, names: list[str], channel: str = CHANNEL) -> Log:
        return self.event("emoteList", [{"name": n, "image": ""} for n in names], channel)

    def tick(self) -> Log:
        return self.journal(ev.Tick(timestamp=self.now))


class Projection:
    """A Projector writing to an in-memory DuckDB, batch by batch."""

    def __init__(self) -> None:
        self.con = duckdb.connect(":memory:")
        apply.create_schema(self.con)
        self.projector = Projector()

    def run(self, log: Log, batch: int = 1_000_000, start: int = 0, reload_every: int = 0) -> Projection:
        """Project messages[start:] in batches; optionally reload State from the tables."""
        msgs = log.messages
        for i in range(start, len(msgs), batch):
            runner = BatchRunner(self.projector, AT_END)
            runner.project((seq, *m) for seq, m in enumerate(msgs[i : i + batch], i + 1))
            result = runner.flush(self.con)
            if reload_every and (i // batch) % reload_every == 0:
                self.projector = Projector(apply.load_state(self.con), result.seq, result.event_us)
        return self

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params)).fetchall()

    def value(self, sql: str, *params: Any) -> Any:
        row = self.con.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    def table(self, name: str) -> list[tuple[Any, ...]]:
        return self.rows(f"SELECT * FROM {name} ORDER BY ALL")

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table and view; the checkpoint without the database's generation id."""
        out = {name: self.table(name) for name in (*schema.ALL_TABLE_NAMES, *schema.VIEWS)}
        out[schema.CHECKPOINT_TABLE] = self.rows(
            f"SELECT seq, projection_version, event_time_us FROM {schema.CHECKPOINT_TABLE}"
        )
        return out


def project(log: Log, **kwargs: Any) -> Projection:
    return Projection().run(log, **kwargs)


def projected(log: Log) -> Delta:
    """What a log projects to, straight from the projection (no SQL): one batch from empty
    tables, so each table's upserts are its rows."""
    projector = Projector()
    for seq, (subject, data, stream_us) in enumerate(log.messages, 1):
        projector.project(seq, subject, data, stream_us)
    return projector.take_delta()


def rows_of(log: Log, table: str) -> list[tuple[Any, ...]]:
    """A table's rows (key columns, then value columns) as the projection makes them."""
    return sorted((*key, *values) for key, values in projected(log).tables[table].upserts.items())


def counters(log: Log) -> dict[str, dict[tuple[Any, ...], list[int]]]:
    """The counters rows a log projects to, by kind. Keys are the counters key without its
    kind: (username, channel, domain, item, bucket); values (n1, n2)."""
    out: dict[str, dict[tuple[Any, ...], list[int]]] = {}
    for (kind, *key), values in projected(log).counters.upserts.items():
        out.setdefault(kind, {})[tuple(key)] = values
    return out
