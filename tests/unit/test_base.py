"""Issue 20, item 3: a rebuild's base (a snapshot file) continues exactly like the live tables."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from userstats.ingest.rebuild import Base, RebuildError, load_base
from userstats.ingest.snapshotter import write_snapshot
from userstats.shared import apply, schema
from userstats.shared.projection import Projector
from userstats.sim.generator import Simulator

from tests.projection_helpers import Log, Projection


def _log(n: int) -> Log:
    log = Log()
    for subject, data in Simulator(seed=5).events(n):
        log.raw(subject, data)
    return log


def test_a_base_plus_the_tail_equals_the_whole_log(tmp_path: Path) -> None:
    log = _log(3_000)
    head, whole = Log(), Projection().run(log)
    head.messages = log.messages[:2_000]
    live = Projection().run(head)
    snap = tmp_path / "snap.duckdb"
    write_snapshot(live.con, snap)
    rebuilt = Projection()
    load_base(rebuilt.con, snap)
    cp = apply.read_checkpoint(rebuilt.con)
    assert cp.seq == 2_000 and cp.projection_version == schema.PROJECTION_VERSION
    rebuilt.projector = Projector(apply.load_state(rebuilt.con), cp.seq, cp.event_time_us)
    rebuilt.run(log, start=2_000)
    assert rebuilt.dump() == whole.dump()


def test_a_base_with_other_columns_is_refused(tmp_path: Path) -> None:
    snap = tmp_path / "old.duckdb"
    con = duckdb.connect(str(snap))
    apply.create_schema(con)
    con.execute("ALTER TABLE users ADD COLUMN gone VARCHAR")
    con.close()
    with pytest.raises(RebuildError, match=r"table users .* cannot be continued from"):
        load_base(Projection().con, snap)


def test_a_base_of_another_version_says_what_it_cannot_recompute() -> None:
    same = Base("snapshot-x", 900, schema.PROJECTION_VERSION, Path("x")).describe(500)
    assert "retention removed 1..499" in same and "replaying seq 901 on" in same and "differs" not in same
    other = Base("snapshot-x", 900, schema.PROJECTION_VERSION - 1, Path("x")).describe(500)
    assert "rules apply to events from seq 901 on only" in other
    assert f"stays as version {schema.PROJECTION_VERSION - 1} counted it" in other
