"""Issue 20: no private-message text at rest, and a stream that captures only what is projected.

PMs carry unique marker words. After they are counted, the markers must be found nowhere:
not in any stream message, not in the snapshots of the Object Store, not in the DuckDB files
(ingest's, a replica's, a rebuilt one), not in the dead letters. And the counts must hold
live, after kill -9 of ingest, after a crash between a batch's commit and its erasure, and
after a rebuild.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path
from typing import Any

import duckdb
from nats.aio.client import Client
from nats.js import api
from nats.js.errors import NotFoundError, ObjectNotFoundError
from userstats.ingest.journal import Journal
from userstats.shared import apply, subjects
from userstats.shared import events as ev
from userstats.shared.projection import CAPTURED_SUBJECTS, Projector
from userstats.shared.subjects import event_subject

from testbed.harness import (
    NatsServer,
    Service,
    Stack,
    caught_up,
    connect,
    publish_all,
    raw_pms,
    request,
    wait_for,
)
from tests.integration.streamtools import dump, dump_file, read_stream, rebuild
from tests.integration.test_rebuild import cli, finish
from tests.projection_helpers import Log

CHANNEL = "420Grindhouse"
RUN = uuid.uuid4().hex[:8]


class Markers:
    def __init__(self) -> None:
        self.words: list[str] = []

    def new(self) -> str:
        word = f"pmsecret{RUN}x{len(self.words)}"
        self.words.append(word)
        return word

    def found_in_bytes(self, blob: bytes) -> list[str]:
        return [w for w in self.words if w.encode() in blob]

    def found_in(self, blob: Any) -> list[str]:
        text = blob if isinstance(blob, str) else repr(blob)
        return [w for w in self.words if w in text]


def pm_traffic(log: Log, markers: Markers, pms: int, start: float) -> dict[str, int]:
    """Chat, joins and `pms` private messages (each with a new marker); the PM counts by sender."""
    senders = ["alice", "bob", "carol"]
    sent: dict[str, int] = {}
    t = start
    for name in senders:
        log.at(t).join(name)
    for i in range(pms):
        t += 1
        sender = senders[i % 3]
        log.at(t).chat(sender, f"line {i} ++{senders[(i + 1) % 3]}")
        log.at(t + 0.5).event("pm", {"username": sender, "msg": f"hush {markers.new()} now", "to": "Bot"})
        sent[sender] = sent.get(sender, 0) + 1
    return sent


async def all_stream_messages(nc: Client, stream: str = "USERSTATS") -> list[tuple[int, str, bytes]]:
    """Every message the stream holds, whatever its subject, one by one."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    out = []
    for seq in range(int(info.state.first_seq), int(info.state.last_seq) + 1):
        try:
            msg = await js.get_msg(stream, seq)
        except NotFoundError:
            continue
        out.append((seq, str(msg.subject), bytes(msg.data or b"")))
    return out


def duckdb_rows(path: Path) -> list[Any]:
    """Every row of every table of a DuckDB file (read-only), plus its raw bytes."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        rows: list[Any] = [con.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables]
    finally:
        con.close()
    return [*rows, path.read_bytes()]


async def snapshot_objects(nc: Client, dest: Path) -> list[Path]:
    obs = await nc.jetstream().object_store(subjects.SNAPSHOT_BUCKET)
    paths = []
    for info in await obs.list():
        try:
            result = await obs.get(info.name)
        except ObjectNotFoundError:  # pruned meanwhile (its chunks are searched apart)
            continue
        path = dest / f"snap-{len(paths)}.duckdb"
        path.write_bytes(result.data or b"")
        paths.append(path)
    return paths


async def object_store_chunks(nc: Client) -> list[bytes]:
    """The raw chunks of every object the snapshot bucket still stores (old ones included)."""
    return [d for _, _, d in await all_stream_messages(nc, f"OBJ_{subjects.SNAPSHOT_BUCKET}")]


async def pm_counts(nc: Client, users: list[str], min_seq: int = 0) -> dict[str, int]:
    out = {}
    for user in users:
        reply = await request(nc, {"command": "user.stats", "username": user, "min_seq": min_seq})
        out[user] = int(reply["data"]["pms"]) if reply["success"] else -1
    return out


async def counted_and_erased(nc: Client, ingest: Service, query: Service, users: list[str]) -> dict[str, int]:
    """Ingest and the replica at the stream's end with no raw PM left; the replica's PM counts."""
    await caught_up(nc, ingest)
    last = await caught_up(nc, query)
    assert await raw_pms(nc) == 0
    return await pm_counts(nc, users, last)


async def no_marker_anywhere(nc: Client, stack: Stack, markers: Markers, tmp: Path) -> None:
    stream = await all_stream_messages(nc)
    hits = [
        (seq, subject) for seq, subject, data in stream if markers.found_in(data.decode(errors="replace"))
    ]
    assert hits == [], f"PM text still in the stream at {hits}"
    assert not [s for _, s, _ in stream if s.startswith("kryten.events.") and s.endswith(".pm")]
    for path in await snapshot_objects(nc, tmp):
        assert markers.found_in(duckdb_rows(path)) == [], f"PM text in snapshot {path}"
    for chunk in await object_store_chunks(nc):
        assert markers.found_in(chunk) == []
    # and on the server's disk: an erase overwrites the message in its block file (a delete
    # with no_erase would leave the bytes, and S2 keeps a unique word as a literal)
    assert isinstance(stack.nats, NatsServer)
    on_disk = [
        (str(f.relative_to(stack.nats.store)), w)
        for f in stack.nats.store.rglob("*")
        if f.is_file()
        for w in markers.found_in_bytes(f.read_bytes())
    ]
    assert on_disk == [], f"PM text in the NATS store files: {on_disk[:5]}"


async def test_pm_text_is_erased_everywhere_and_each_pm_counts_once(stack: Stack, tmp_path: Path) -> None:
    markers = Markers()
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    nc = await connect(stack.nats.url)
    users = ["alice", "bob", "carol"]
    try:
        log = Log()
        sent = pm_traffic(log, markers, 30, 0)
        # a PM ingest cannot decode: a dead letter, which must keep no text either
        bad = f'{{"event_name": "pm", "channel": "{CHANNEL}", "payload": "{markers.new()}"'.encode()
        log.raw(event_subject(CHANNEL, "pm"), bad)
        await publish_all(nc, [(s, d) for s, d, _ in log.messages])
        query.wait_healthy()
        await caught_up(nc, ingest)
        last = await caught_up(nc, query)
        assert await pm_counts(nc, users, last) == sent
        assert (await request(nc, {"command": "system.stats"}))["data"]["total_pms"] == 30
        assert await raw_pms(nc) == 0
        code, out = finish(cli(stack, "dead-letters"))
        assert (code == 0 and "1 dead letter" in out.lower()) or '"total": 1' in out, out
        assert markers.found_in(out) == []
        await wait_for(lambda: ingest.log.read_text().count("snapshot") > 0, what="a snapshot")
        await no_marker_anywhere(nc, stack, markers, tmp_path)

        # kill -9 of ingest at a random moment while PMs arrive
        for round_ in range(3):
            log = Log()
            more = pm_traffic(log, markers, 40, 1000 * (round_ + 1))
            for user, n in more.items():
                sent[user] += n
            await publish_all(nc, [(s, d) for s, d, _ in log.messages])
            await asyncio.sleep(random.uniform(0.0, 0.3))
            ingest.kill9()
            ingest = stack.ingest()
            ingest.wait_healthy()
        assert await counted_and_erased(nc, ingest, query, users) == sent

        # the crash window itself: a batch committed (its PMs queued), ingest killed before it
        # erased them; for the first, its journal event was appended but the raw PM not deleted
        assert ingest.stop() == 0
        log = Log()
        more = pm_traffic(log, markers, 5, 9000)
        for user, n in more.items():
            sent[user] += n
        await publish_all(nc, [(s, d) for s, d, _ in log.messages])
        queued = commit_without_erasing(stack.db_path, await read_stream(nc))
        assert len(queued) == 5 and await raw_pms(nc) == 5
        first_seq, (first_user, first_us) = min(queued.items())
        pm = ev.PmRedacted(timestamp=ev.from_us(first_us), seq=first_seq, username=first_user)
        await Journal(nc.jetstream(), "USERSTATS").append(pm, msg_id=f"test-{uuid.uuid4().hex}")
        ingest = stack.ingest()
        ingest.wait_healthy()
        assert await counted_and_erased(nc, ingest, query, users) == sent
        await wait_for(
            lambda: "pms_erased_total 5.0" in ingest.metrics(), what="the sweep to erase the 5 queued PMs"
        )

        # counted but never deleted: raw PM A's journal event is in the tables (a rebuild took
        # them past it), so only the sweep at start finds A; raw PM B and its journal event
        # come in one batch of a replay, which deletes B as it counts it
        assert ingest.stop() == 0
        for name in ("A", "B"):
            await counted_not_deleted(nc, markers, sent, name)
            if name == "A":
                code, out = finish(cli(stack, "rebuild"))
                assert code == 0, out
                assert dump_file(stack.db_path)["pm_erase_queue"] == []
        assert await raw_pms(nc) == 2
        ingest = stack.ingest()
        ingest.wait_healthy()
        assert await counted_and_erased(nc, ingest, query, users) == sent
        assert "was counted but not deleted; deleting it" in ingest.log.read_text()

        # every table after a rebuild equals the live ones; a replay of the stream does too
        assert ingest.stop() == 0
        live = dump_file(stack.db_path)
        assert live["pm_erase_queue"] == []
        assert dump(rebuild(await read_stream(nc))) == live
        code, out = finish(cli(stack, "rebuild"))
        assert code == 0, out
        assert dump_file(stack.db_path) == live
        assert sum(r[6] for r in live["counters"] if r[0] == "pm") == sum(sent.values())
        await no_marker_anywhere(nc, stack, markers, tmp_path)
        assert markers.found_in(duckdb_rows(stack.db_path)) == []
        # a replica keeps its tables in memory: nothing of it stays on disk once loaded
        assert list(Path(query.env["USERSTATS_REPLICA_DIR"]).iterdir()) == []
    finally:
        await nc.close()


async def counted_not_deleted(nc: Client, markers: Markers, sent: dict[str, int], name: str) -> None:
    """A raw PM and the journal event ingest appends for it, as if its delete had failed."""
    js = nc.jetstream()
    log = Log().at(20_000 + len(markers.words))
    log.event("pm", {"username": "carol", "msg": f"{name} {markers.new()}", "to": "Bot"})
    subject, data, time_us = log.messages[0]
    seq = (await js.publish(subject, data)).seq
    pm = ev.PmRedacted(timestamp=ev.from_us(time_us), seq=seq, username="carol")
    await Journal(js, "USERSTATS").append(pm, msg_id=f"userstats-pm-{seq}")
    sent["carol"] += 1


def commit_without_erasing(db: Path, items: list[Any]) -> dict[int, tuple[str, int]]:
    """What ingest's loop commits for the stream after its checkpoint (one batch), stopping
    where a kill -9 would: before the PMs' journal events and deletes. Returns the queue."""
    con = duckdb.connect(str(db))
    try:
        cp = apply.read_checkpoint(con)
        p = Projector(apply.load_state(con), cp.seq, cp.event_time_us)
        for it in items:
            if it.seq > cp.seq:
                p.project(it.seq, it.subject, it.data, it.stream_us)
        apply.apply_batch(con, p.take_delta(), p.last_seq, p.last_event_us)
        rows = con.execute("SELECT seq, username, time_us FROM pm_erase_queue").fetchall()
    finally:
        con.close()
    return {int(s): (str(u), int(t)) for s, u, t in rows}


async def test_an_existing_stream_moves_to_the_projected_subjects_and_s2(stack: Stack) -> None:
    nc = await connect(stack.nats.url)
    try:
        js = nc.jetstream()
        old = api.StreamConfig(
            name="USERSTATS",
            subjects=["kryten.events.cytube.>", "userstats.journal.>"],
            storage=api.StorageType.FILE,
        )
        await js.add_stream(old)
        ignored = event_subject(CHANNEL, "mediaUpdate")
        await nc.publish(ignored, b'{"event_name": "mediaUpdate", "payload": {"currentTime": 1}}')
        await nc.flush()
        ingest = stack.ingest()
        ingest.wait_healthy()
        info = await js.stream_info("USERSTATS")
        assert sorted(info.config.subjects or []) == sorted(CAPTURED_SUBJECTS)
        assert info.config.compression == api.StoreCompression.S2
        assert info.state.messages >= 2  # the old mediaUpdate stays (README), settings appended
        before = int(info.state.last_seq)
        for name in ("mediaUpdate", "usercount", "setPlaylistMeta", "playlist"):
            await nc.publish(event_subject(CHANNEL, name), b'{"event_name": "x"}')
        chat = Log().chat("alice", "hi")
        await publish_all(nc, [(s, d) for s, d, _ in chat.messages])
        info = await js.stream_info("USERSTATS", subjects_filter=">")
        assert int(info.state.last_seq) == before + 1  # only the chat line was captured
        assert ingest.stop() == 0
        assert "now captures" in ingest.log.read_text()
    finally:
        await nc.close()
