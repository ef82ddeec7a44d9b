"""A rebuild's error, and the base it starts from when the stream lost its beginning.

The rebuild itself projects the stream into a shadow DuckDB file (ingest/rebuild_shadow.py).
A stream with a retention (max age, bytes or messages) no longer starts at seq 1. The
rebuild then starts from a base: the newest snapshot in the Object Store whose tables reach
at least the seq before the stream's first message (ingest publishes one every few seconds,
so one is always newer than the oldest event kept), and replays the tail after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb
import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from userstats.shared import events as ev
from userstats.shared import schema, snapshots, subjects
from userstats.shared.projection import PM_EVENT

log = logging.getLogger(__name__)


class RebuildError(Exception):
    """The rebuild cannot be done as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Base:
    """A snapshot a rebuild starts from instead of seq 1."""

    object: str
    seq: int
    projection_version: int
    path: Path

    def describe(self, first_seq: int) -> str:
        """What a rebuild from this base recomputes, and what it cannot."""
        text = (
            f"the stream starts at seq {first_seq} (its retention removed 1..{first_seq - 1}): starting from "
            f"snapshot {self.object} (tables at seq {self.seq}, projection version "
            f"{self.projection_version}) and replaying seq {self.seq + 1} on"
        )
        if self.projection_version != schema.PROJECTION_VERSION:
            text += (
                f". Projection version {schema.PROJECTION_VERSION} differs from the base's "
                f"{self.projection_version}: its rules apply to events from seq {self.seq + 1} on only; "
                f"what events up to seq {self.seq} contributed stays as version {self.projection_version} "
                "counted it, since those events are gone (keep more history with a larger retention, "
                "or none, to recompute everything)"
            )
        return text


async def head_was_erased(js: JetStreamContext, stream: str, first: int) -> bool:
    """Whether messages 1..first-1 are all raw PMs that ingest erased (each "pm" journal event
    names the raw seq it replaces; they come after their raw ones, in seq order), rather than
    messages the stream's limits removed: then the rebuild needs no base."""
    want, at = 1, first
    while want < first:
        try:
            msg = await js.get_msg(stream, seq=at, subject=subjects.journal_subject(PM_EVENT), next=True)
        except NotFoundError:
            return False
        at = int(msg.seq or 0) + 1
        try:
            event = ev.JOURNAL_DECODER.decode(msg.data or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if not isinstance(event, ev.PmRedacted) or event.seq < want:
            continue
        if event.seq > want:
            return False
        want += 1
    return True


async def find_base(js: JetStreamContext, first_seq: int, target: int, workdir: Path) -> Base | None:
    """Download the newest snapshot with first_seq - 1 <= seq <= target (None if there is none)."""
    try:
        obs = await js.object_store(subjects.SNAPSHOT_BUCKET)
        infos = await obs.list()
    except Exception as exc:  # no bucket, or an empty one
        log.debug("listing snapshots: %s", exc)
        return None
    candidates = []
    for info in infos:
        parts = (info.name or "").split("-")
        if info.deleted or len(parts) < 3 or parts[0] != "snapshot" or not parts[1].isdigit():
            continue
        if first_seq - 1 <= int(parts[1]) <= target:
            candidates.append((int(parts[1]), info))
    for _, info in sorted(candidates, key=lambda c: c[0], reverse=True):
        path = workdir / f"base-{info.name}.duckdb"
        pointer = snapshots.SnapshotPointer(
            0, info.name, 0, "", int(info.size or 0), snapshots.digest_hex(info.digest) or "", ""
        )
        try:
            await snapshots.download(js, pointer, path, timeout=60)
            con = duckdb.connect(str(path), read_only=True)
            try:
                row = con.execute(f"SELECT seq, projection_version FROM {schema.CHECKPOINT_TABLE}").fetchone()
            finally:
                con.close()
        except (snapshots.SnapshotError, duckdb.Error, OSError) as exc:
            log.warning("snapshot %s cannot be a base: %s", info.name, exc)
            path.unlink(missing_ok=True)
            continue
        assert row is not None
        return Base(info.name, int(row[0]), int(row[1]), path)
    return None


def load_base(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Fill the new, empty tables from a snapshot file and take over its checkpoint (with this
    version and the new generation). A table the base lacks (added since) starts empty; one
    whose columns differ cannot be continued from, and the rebuild says so."""
    con.execute(f"ATTACH '{path}' AS base (READ_ONLY)")
    try:
        have: dict[str, list[str]] = {}
        for table, column in con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'base' "
            "ORDER BY table_name, column_index"
        ).fetchall():
            have.setdefault(table, []).append(column)
        for spec in schema.TABLES:
            if spec.name not in have:
                continue
            want = [c.name for c in spec.columns]
            if have[spec.name] != want:
                raise RebuildError(
                    f"the base snapshot's table {spec.name} has columns {have[spec.name]}, this version "
                    f"{want}: it cannot be continued from; keep the stream's full history to rebuild"
                )
            con.execute(f"INSERT INTO main.{spec.name} SELECT * FROM base.{spec.name}")
        row = con.execute(f"SELECT seq, event_time_us FROM base.{schema.CHECKPOINT_TABLE}").fetchone()
        assert row is not None
        con.execute(
            f"UPDATE {schema.CHECKPOINT_TABLE} SET seq = ?, event_time_us = ?, projection_version = ?",
            [int(row[0]), int(row[1]), schema.PROJECTION_VERSION],
        )
    finally:
        con.execute("DETACH base")
