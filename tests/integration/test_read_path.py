"""The replica's read path (issue 18): reads do not wait for writes, and plain reads are fresh.

- While the writer thread holds a large uncommitted write, reads on the tables answer from
  the last committed sequence, and new events are projected into the read model and readable
  from it: nothing waits for the write.
- A plain user.stats (no min_seq) shows a just-published chat line within a bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import duckdb
from userstats.query import reads
from userstats.query.model import ModelUsers
from userstats.query.replica import Replica
from userstats.query.tables import Committed
from userstats.shared import messages as m
from userstats.sim.generator import Simulator

from testbed.harness import Stack, caught_up, chat_envelope, connect, publish_all, request, wait_for

DOMAIN = "cytu.be"
CHANNEL = "420Grindhouse"


def message_total(view: Committed) -> tuple[int, int]:
    row = view.con.execute("SELECT sum(n1) FROM counters WHERE kind = 'message'").fetchone()
    assert row is not None
    return view.seq, int(row[0])


async def test_reads_answer_while_a_large_write_is_under_way(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    stop = asyncio.Event()
    replica = Replica(nc.jetstream(), "USERSTATS", str(stack.tmp / "inproc-replica"), threads=1)
    follower = asyncio.create_task(replica.run(stop))
    release = threading.Event()
    holding = threading.Event()

    def long_write() -> None:
        """A write of every counters row, held open (the writer thread is busy until released)."""
        con = replica.con
        assert con is not None
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("UPDATE counters SET n1 = n1 + 1000000")
            holding.set()
            release.wait(60)
        finally:
            con.execute("ROLLBACK")

    blocker: asyncio.Future[None] | None = None
    try:
        await publish_all(nc, Simulator(seed=3, step_us=50_000).events(5_000))
        last = await caught_up(nc, ingest)  # past the PM journal events ingest appended
        await wait_for(lambda: replica.following and replica.applied_seq >= last, timeout=60, what="follow")
        await replica.flush_to(last)
        seq, before = await replica.read(message_total)
        assert seq == replica.db_seq >= last

        blocker = asyncio.ensure_future(replica.db(long_write))
        await wait_for(holding.is_set, timeout=30, what="the long write to start")
        # a read on the tables: the committed sequence, not the write under way, at once
        t0 = time.perf_counter()
        seq2, during = await asyncio.wait_for(replica.read(message_total), 5)
        assert (seq2, during) == (seq, before)
        assert time.perf_counter() - t0 < 5
        # new events are projected and readable from the model while the writer is busy
        n = 0
        for i in range(3):
            n += 1
            await nc.publish(
                *chat_envelope(
                    "WriterBusy",
                    f"line {i}",
                    channel=CHANNEL,
                    domain=DOMAIN,
                    time_us=1_766_000_000_000_000 + i,
                )
            )
        await nc.flush()
        await wait_for(lambda: replica.applied_seq >= last + n, timeout=30, what="projection past the write")
        assert not blocker.done() and replica.db_seq == seq  # the write is still under way
        model = replica.model
        assert model is not None and model.seq >= last + n
        stats = reads.SOURCE_READS["user.stats"](
            ModelUsers(model, DOMAIN), m.UserParams(username="writerbusy", channel=CHANNEL)
        )
        assert stats.username == "WriterBusy" and stats.messages == 3
    finally:
        release.set()
        if blocker is not None:
            await blocker
        stop.set()
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await replica.close()
        await nc.close()


async def test_a_plain_read_shows_a_published_line_within_a_bound(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    nc = await connect(stack.nats.url)
    try:
        query.wait_healthy()
        await publish_all(nc, Simulator(seed=4, step_us=50_000).events(2_000))
        await caught_up(nc, query)
        body: dict[str, Any] = {"command": "user.stats", "username": "FreshLine", "channel": CHANNEL}
        for i in range(5):
            t0 = time.perf_counter()
            await nc.publish(
                *chat_envelope(
                    "FreshLine", f"hi {i}", channel=CHANNEL, domain=DOMAIN, time_us=1_767_000_000_000_000 + i
                )
            )
            while True:
                reply = await request(nc, body)
                if reply["data"]["messages"] == i + 1:
                    break
                assert time.perf_counter() - t0 < 1.0, f"line {i} not visible to a plain read after 1 s"
                await asyncio.sleep(0.005)
    finally:
        await nc.close()


def test_committed_reads_see_one_checkpoint() -> None:
    """DuckDB's MVCC as the replica uses it: a read in a transaction on its own cursor keeps
    seeing the checkpoint it started at while another connection commits a newer one."""
    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE t (seq BIGINT)")
    con.execute("INSERT INTO t VALUES (1)")
    cur = con.cursor()
    cur.execute("BEGIN TRANSACTION")
    assert cur.execute("SELECT seq FROM t").fetchone() == (1,)
    con.execute("UPDATE t SET seq = 2")
    assert cur.execute("SELECT seq FROM t").fetchone() == (1,)
    cur.execute("ROLLBACK")
    assert cur.execute("SELECT seq FROM t").fetchone() == (2,)
