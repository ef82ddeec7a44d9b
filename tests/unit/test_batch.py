"""The one batch loop (shared/batch.py): flush policies, the batch result, same tables."""

from __future__ import annotations

import duckdb
from userstats.shared import apply, schema
from userstats.shared.batch import AT_END, BatchRunner, FlushPolicy, Message
from userstats.shared.projection import Projector

from tests.projection_helpers import Log
from tests.unit.test_determinism import sim_log


def messages(log: Log) -> list[Message]:
    return [(seq, subject, data, us) for seq, (subject, data, us) in enumerate(log.messages, 1)]


def database() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    apply.create_schema(con)
    return con


def test_max_events_cuts_batches_and_each_result_says_where_the_tables_are() -> None:
    log = (
        Log().join("Alice").chat("Alice", "hi").chat("bob", "yo").raw("kryten.events.cytube.x.chatmsg", b"{")
    )
    log.chat("Alice", "again").leave("Alice").chat("Carol", "hey")
    con = database()
    results = BatchRunner(Projector(), FlushPolicy(max_events=3)).run(con, messages(log))
    assert [(r.seq, r.events) for r in results] == [(3, 3), (6, 3), (7, 1)]
    assert [r.dead_letters for r in results] == [0, 1, 0]
    assert results[0].users == {"alice", "bob"} and "carol" in results[2].users
    assert not any(r.forgot or r.forgotten_seqs for r in results)
    assert apply.read_checkpoint(con).seq == 7
    assert con.execute("SELECT count(*) FROM dead_letters").fetchone() == (1,)


def test_every_policy_gives_the_tables_of_one_batch() -> None:
    log = sim_log(3_000)
    items = messages(log)
    tables, cuts = [], []
    for policy in (AT_END, FlushPolicy(max_events=250), FlushPolicy(max_pending_rows=500, check_every=100)):
        con = database()
        results = BatchRunner(Projector(), policy).run(con, items)
        assert sum(r.events for r in results) == len(items) and results[-1].seq == len(items)
        assert sum(r.dead_letters for r in results) == 2  # the two poison lines sim_log adds
        tables.append(
            {
                name: con.execute(f"SELECT * EXCLUDE (generation) FROM {name} ORDER BY ALL").fetchall()
                if name == schema.CHECKPOINT_TABLE
                else con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
                for name in schema.ALL_TABLE_NAMES
            }
        )
        cuts.append(len(results))
    assert tables[0] == tables[1] == tables[2] and tables[0]["counters"]
    assert cuts[0] == 1 and cuts[1] == -(-len(items) // 250) and cuts[2] > 1


def test_pending_rows_are_looked_at_every_check_every_events() -> None:
    items = messages(sim_log(1_000))
    runner = BatchRunner(Projector(), FlushPolicy(max_pending_rows=1, check_every=400))
    runner.project(items[:399])
    assert not runner.full()  # not looked at yet
    runner.project(items[399:400])
    assert runner.full()


def test_lazy_flush_is_due_after_the_linger_and_pending_until_taken() -> None:
    items = messages(sim_log(100))
    runner = BatchRunner(Projector(), FlushPolicy(linger_seconds=0.0))
    assert not runner.due() and not runner.pending
    runner.project(items[:10])
    assert runner.pending and runner.due()
    batch = runner.take()
    assert batch.seq == 10 and batch.events == 10 and not runner.pending and not runner.due()
    con = database()
    assert BatchRunner.write(con, batch).seq == apply.read_checkpoint(con).seq == 10
