"""The stream reader tells a jump over deleted messages (erased raw PMs: normal) from messages
the stream's limits removed (a gap it reports), also on the first message it reads."""

from __future__ import annotations

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
