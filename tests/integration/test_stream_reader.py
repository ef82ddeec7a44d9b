"""The stream reader tells a jump over deleted messages (erased raw PMs: normal) from messages
the stream's limits removed (a gap it reports), also on the first message it reads."""

from __future__ import annotations

import asyncio
import logging

import nats
import pytest
from nats.js import api
from userstats.shared.stream import StreamReader

from testbed.harness import NatsServer, wait_for

STREAM = "READERTEST"
SUBJECTS = ["rt.>"]


async def _read_all(js: nats.js.JetStreamContext, start: int, expect: int) -> StreamReader:
    reader = StreamReader(js, STREAM, SUBJECTS, start)
    await reader.start()
    got: list[int] = []

    async def all_in() -> bool:
        await reader.wait(0.2)
        got.extend(i.seq for i in reader.take(1000))
        return len(got) >= expect

    await wait_for(all_in, timeout=20, what=f"{expect} messages")
    await reader.stop()
    return reader


async def test_deleted_messages_at_the_start_are_holes_not_gaps(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(api.StreamConfig(name=STREAM, subjects=SUBJECTS))
        for i in range(10):
            await js.publish("rt.x", str(i).encode())
        for seq in (4, 5, 6, 8):  # erased raw PMs: three where the reader starts, one later
            await js.delete_msg(STREAM, seq)
        with caplog.at_level(logging.WARNING, logger="userstats.shared.stream"):
            reader = await _read_all(js, 4, 3)
        assert reader.gaps == []
        assert reader.holes == 4
        assert reader.next_seq == 11
        assert not [r for r in caplog.records if "not in the stream" in r.getMessage()]
    finally:
        await nc.close()


async def test_messages_removed_by_the_limits_are_a_reported_gap(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(api.StreamConfig(name=STREAM, subjects=SUBJECTS, max_msgs=5))
        for i in range(10):  # the limit keeps 6..10
            await js.publish("rt.x", str(i).encode())
        await js.delete_msg(STREAM, 8)  # and one of those is deleted
        with caplog.at_level(logging.WARNING, logger="userstats.shared.stream"):
            reader = await _read_all(js, 2, 4)
        assert reader.gaps == [(2, 5)]
        assert reader.holes == 1
        assert [r for r in caplog.records if "messages 2..5 are not in the stream" in r.getMessage()]
    finally:
        await nc.close()


async def test_a_resubscribe_during_an_outage_is_retried_until_the_server_is_back(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The reader resubscribes when the client dropped messages (a slow consumer); if the
    server cannot be reached then, it tries again until it can, and reads on from where it was
    (before, the failed subscribe ended the task and the reader waited forever)."""
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream(timeout=1)
        await js.add_stream(api.StreamConfig(name=STREAM, subjects=SUBJECTS))
        for i in range(5):
            await js.publish("rt.x", str(i).encode())
        reader = StreamReader(js, STREAM, SUBJECTS, 1)
        await reader.start()
        got: list[int] = []

        async def have(n: int) -> bool:
            await reader.wait(0.2)
            got.extend(i.seq for i in reader.take(1000))
            return len(got) >= n

        await wait_for(lambda: have(5), timeout=20, what="the first 5 messages")
        nats_server.stop()
        with caplog.at_level(logging.WARNING, logger="userstats.shared.stream"):
            resubscribe = asyncio.create_task(reader._resubscribe())  # what a dropped message starts
            await wait_for(
                lambda: [r for r in caplog.records if "cannot resubscribe from seq 6" in r.getMessage()],
                timeout=20,
                what="a failed resubscribe",
            )
            assert not resubscribe.done()  # still trying
            nats_server.start()
            await wait_for(resubscribe.done, timeout=30, what="the resubscribe to succeed")
        assert resubscribe.exception() is None
        for i in range(5, 10):
            await js.publish("rt.x", str(i).encode())
        await wait_for(lambda: have(10), timeout=20, what="the messages after the outage")
        assert got == list(range(1, 11))
        await reader.stop()
    finally:
        await nc.close()


async def test_a_reader_that_takes_nothing_holds_back_the_server(nats_server: NatsServer) -> None:
    """Flow control bounds what is in flight: a reader whose buffer is full gets at most
    about the server's flow-control window (32 MiB) beyond it, not the whole backlog (with a
    callback subscription nats-py confirmed flow control on arrival, and a million-event
    backlog became 500 MB of queued messages in ingest); once it takes them, everything
    arrives, in order."""
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(api.StreamConfig(name=STREAM, subjects=SUBJECTS))
        body = b"x" * 1000
        total = 120_000  # 120 MB: nearly four windows
        for start in range(0, total, 5000):
            await asyncio.gather(*(js.publish("rt.x", body) for _ in range(5000)))
            del start
        reader = StreamReader(js, STREAM, SUBJECTS, 1, max_buffer=1000)
        await reader.start()

        async def delivered() -> int:
            infos = await js.consumers_info(STREAM)
            return max(int(i.delivered.stream_seq) for i in infos)

        await wait_for(lambda: reader.buffered() >= 1000, timeout=20, what="a full buffer")
        await asyncio.sleep(2)  # long enough for an unbounded consumer to send everything
        sent = await delivered()
        assert sent < total // 2, f"the server sent {sent} of {total} messages to a reader taking none"
        got: list[int] = []

        async def have_all() -> bool:
            await reader.wait(0.2)
            got.extend(i.seq for i in reader.take(5000))
            return len(got) >= total

        await wait_for(have_all, timeout=60, what="every message once the reader takes them")
        assert got == list(range(1, total + 1))
        await reader.stop()
    finally:
        await nc.close()
