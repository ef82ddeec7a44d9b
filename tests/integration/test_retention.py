"""Issue 20, item 3: a stream with a retention still rebuilds, from the newest snapshot as a base.

The retention here is a byte limit so small that most of the first events are dropped during
the test; a byte limit drops exactly when it is reached, so the test does not race a clock."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

from userstats.shared.projection import is_captured
from userstats.shared.subjects import DEFAULT_STREAM
from userstats.sim.generator import Simulator

from testbed.harness import Stack, caught_up, connect, publish_all, wait_for
from tests.integration.streamtools import dump_file
from tests.integration.test_rebuild import cli, finish


async def test_rebuild_and_a_new_database_start_from_a_snapshot_after_events_aged_out(
    stack: Stack, tmp_path: Path
) -> None:
    events = Simulator(seed=47).events(2_200)
    ingest = stack.ingest()
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    js = nc.jetstream()
    try:
        await publish_all(nc, itertools.islice(events, 2_000))
        first_wave = await caught_up(nc, ingest)
        assert ingest.stop() == 0  # its last snapshot: the tables at first_wave
        size = int((await js.stream_info(DEFAULT_STREAM)).state.bytes)

        # the operator sets a retention: the stream keeps about 40% of what it has
        cfg = tmp_path / "retention.json"
        cfg.write_text(json.dumps({"userstats": {"stream_max_bytes": size * 4 // 10}}))
        ingest = stack.ingest(USERSTATS_CONFIG=str(cfg), USERSTATS_SNAPSHOT_INTERVAL="600")
        ingest.wait_healthy()
        before = int((await js.stream_info(DEFAULT_STREAM)).state.last_seq)  # a settings event, maybe
        tail = list(events)  # the 200 events after the snapshot, of which the stream captures:
        captured = sum(is_captured(subject) for subject, _ in tail)
        await publish_all(nc, tail, wait=False)
        await wait_for(lambda: stored_to(js, before + captured), what="the tail stored")
        last = await caught_up(nc, ingest)
        info = await js.stream_info(DEFAULT_STREAM)
        assert 1_000 < int(info.state.first_seq) < first_wave  # most of the first events are gone

        # rebuild: the newest snapshot (first_wave) is the base, the 200 after it are replayed
        out_file = tmp_path / "rebuilt.duckdb"
        code, out = finish(cli(stack, "rebuild", "--output", str(out_file), USERSTATS_CONFIG=str(cfg)))
        assert code == 0, out
        assert f"tables at seq {first_wave}" in out and f"replaying seq {first_wave + 1} on" in out
        # the tail: the captured events, their PMs' journal events, and a settings event if the
        # first one aged out (it did)
        assert f"rebuilt {last - first_wave} events to seq {last}" in out and last - first_wave >= captured
        assert ingest.stop() == 0
        live = dump_file(stack.db_path)
        assert live["projection_checkpoint"][0][0] == last
        assert dump_file(out_file) == live

        # a new database (ingest on a new host) starts from the newest snapshot too
        shutil.move(stack.db_path, tmp_path / "old.duckdb")
        stack.db_path.with_name(stack.db_path.name + ".wal").unlink(missing_ok=True)
        ingest = stack.ingest(USERSTATS_CONFIG=str(cfg))
        ingest.wait_healthy()
        await caught_up(nc, ingest)
        assert ingest.stop() == 0
        assert "starting from the newest snapshot instead of seq 1" in ingest.log.read_text()
        assert dump_file(stack.db_path) == live
    finally:
        await nc.close()


async def stored_to(js: object, seq: int) -> int:
    info = await js.stream_info(DEFAULT_STREAM)  # type: ignore[attr-defined]
    last = int(info.state.last_seq)
    return last if last >= seq else 0


async def test_with_a_max_age_everything_ages_out_and_the_rebuild_still_equals_the_live_tables(
    stack: Stack, tmp_path: Path
) -> None:
    ingest = stack.ingest(USERSTATS_STREAM_MAX_AGE="2")  # also: the duplicate window fits in it
    ingest.wait_healthy()
    nc = await connect(stack.nats.url)
    js = nc.jetstream()
    try:
        assert (await js.stream_info(DEFAULT_STREAM)).config.max_age == 2
        await publish_all(nc, Simulator(seed=53).events(1_000))
        last = await caught_up(nc, ingest)
        assert ingest.stop() == 0
        live = dump_file(stack.db_path)

        async def aged_out() -> bool:
            state = (await js.stream_info(DEFAULT_STREAM)).state
            return int(state.messages) == 0 and int(state.first_seq) > last

        await wait_for(aged_out, timeout=20, what="every event to age out")
        out_file = tmp_path / "rebuilt.duckdb"
        code, out = finish(cli(stack, "rebuild", "--output", str(out_file), USERSTATS_STREAM_MAX_AGE="2"))
        assert code == 0, out
        assert f"tables at seq {last}" in out
        assert dump_file(out_file) == live
    finally:
        await nc.close()
