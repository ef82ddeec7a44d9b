"""Helpers that read back the stream and compute what the tables must contain."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
from nats.aio.client import Client
from userstats.shared import apply, schema
from userstats.shared import events as ev
from userstats.shared.batch import AT_END, BatchRunner
from userstats.shared.projection import Projector, is_pm_subject
from userstats.shared.stream import Item, StreamReader
from userstats.shared.subjects import DEFAULT_STREAM, STREAM_SUBJECTS

from testbed.harness import stream_last_seq


async def read_stream(nc: Client, stream: str = DEFAULT_STREAM) -> list[Item]:
    """Every stored message, in order, via the same reader the services use."""
    last = await stream_last_seq(nc, stream)
    reader = StreamReader(nc.jetstream(), stream, STREAM_SUBJECTS, 1, max_buffer=10**9)
    await reader.start()
    items: list[Item] = []
    try:
        while not items or items[-1].seq < last:
            if not await reader.wait(timeout=10):
                raise AssertionError(f"stream read stalled at {items[-1].seq if items else 0} of {last}")
            items.extend(reader.take(100_000))
    finally:
        await reader.stop()
    return items


def rebuild(items: list[Item]) -> duckdb.DuckDBPyConnection:
    """Project the whole log from seq 1 into a fresh in-memory database, in one go."""
    con = duckdb.connect(":memory:")
    apply.create_schema(con)
    BatchRunner(Projector(), AT_END).run(con, items)
    return con


def dump(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for name in schema.ALL_TABLE_NAMES:
        cols = "*" if name != schema.CHECKPOINT_TABLE else "seq, projection_version, event_time_us"
        out[name] = con.execute(f"SELECT {cols} FROM {name} ORDER BY ALL").fetchall()
    return out


def dump_file(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return dump(con)
    finally:
        con.close()


PM_JOURNAL_SUBJECT = "userstats.journal.pm"


def pm_key(data: bytes) -> tuple[str, int] | None:
    """(sender, event time in us) of a raw PM envelope: what its "pm" journal event says."""
    try:
        env = ev.ENVELOPE_DECODER.decode(data)
        sender = ev.CHAT_DECODER.decode(env.payload).sender()
    except (ValueError, TypeError):  # msgspec's errors are ValueErrors
        return None
    return (sender, ev.to_us(env.timestamp)) if env.timestamp is not None else None


def redacted_pms(messages: Iterable[tuple[str, bytes]]) -> dict[tuple[str, int], int]:
    """The PMs the stored "pm" journal events stand for (ingest erased most of their raw
    messages once it had counted them): (sender, event time in us) -> the raw PM's seq."""
    out: dict[tuple[str, int], int] = {}
    for subject, data in messages:
        if subject == PM_JOURNAL_SUBJECT:
            e = ev.JOURNAL_DECODER.decode(data)
            if isinstance(e, ev.PmRedacted) and not e.error:
                out[(e.username, ev.to_us(e.timestamp))] = e.seq
    return out


class Oracle:
    """Totals counted straight from the published envelopes, independently of the projection.

    From what a stream holds, a PM is its raw envelope or, once ingest erased that, its "pm"
    journal event (sender and time, no text), and counts once when both are there."""

    def __init__(self, events: list[tuple[str, bytes]]) -> None:
        self.messages: Counter[tuple[str, str, str]] = Counter()
        self.pms: Counter[str] = Counter()
        self.users: set[str] = set()
        redacted = redacted_pms(events)
        for sender, _ in redacted:
            if sender:
                self.pms[sender] += 1
                self.users.add(sender)
        for subject, data in events:
            if is_pm_subject(subject) and pm_key(data) in redacted:
                continue  # counted from its journal event
            try:
                env = json.loads(data)
                name, p = env["event_name"].lower(), env["payload"]
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if name == "chatmsg":
                self.messages[(p["username"], env["channel"], env["domain"])] += 1
                self.users.add(p["username"])
            elif name == "pm":
                self.pms[p["username"]] += 1
                self.users.add(p["username"])
            elif name == "adduser":
                self.users.add(p["name"])
            elif name == "userlist":
                self.users.update(u["name"] for u in p)

    @property
    def total_messages(self) -> int:
        return sum(self.messages.values())

    def user_messages(self, user: str, domain: str) -> dict[str, int]:
        return {c: n for (u, c, d), n in self.messages.items() if u == user and d == domain}
