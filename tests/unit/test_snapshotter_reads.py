"""The snapshotter reads the checkpoint while the projector may be writing on the same
DuckDB connection in another thread. On the connection itself a second call never answers
normally while the other thread's query runs: it is refused ("connection is busy", seen in the
disk-full fault test), or it waits for that query to end and may then return the other
query's row (no row, or a row of another shape); on a cursor of its own it works."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import duckdb
from userstats.ingest.snapshotter import _checkpoint, write_snapshot
from userstats.shared import apply, schema

QUERY = "SELECT count(*) FROM range(3000000000) a WHERE a % 7 = 3"  # seconds of work


def _busy(
    con: duckdb.DuckDBPyConnection, started: threading.Event, ran: list[tuple[float, float]] | None = None
) -> threading.Thread:
    """A thread running QUERY on `con` until it ends or is interrupted; `ran` gets the
    (start, end) of the attempt that had the connection."""

    def work() -> None:
        started.set()
        while True:
            t0 = time.monotonic()
            try:
                with contextlib.suppress(duckdb.InterruptException):  # the test is over
                    con.execute(QUERY).fetchall()
            except duckdb.ResourceInUseException:
                # The test's own read held the connection just then: try again until this
                # thread has it (else the query never runs and the test proves nothing).
                time.sleep(0.0005)
                continue
            if ran is not None:
                ran.append((t0, time.monotonic()))
            return

    t = threading.Thread(target=work, daemon=True)
    t.start()
    started.wait()
    return t


def _stop(con: duckdb.DuckDBPyConnection, t: threading.Thread) -> None:
    for _ in range(300):  # an interrupt that arrives before the query starts is lost
        con.interrupt()
        t.join(0.1)
        if not t.is_alive():
            return


def _open(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / "t.duckdb"))
    con.execute(
        f"CREATE TABLE {schema.CHECKPOINT_TABLE} (seq BIGINT, projection_version INTEGER, "
        "generation VARCHAR, event_time_us BIGINT)"
    )
    con.execute(f"INSERT INTO {schema.CHECKPOINT_TABLE} VALUES (42, 1, 'g', 7)")
    return con


def test_the_connection_itself_never_answers_while_another_thread_is_on_it(tmp_path: Path) -> None:
    con = _open(tmp_path)
    started = threading.Event()
    ran: list[tuple[float, float]] = []
    t = _busy(con, started, ran)
    reads: list[tuple[float, float, str]] = []  # start, end, outcome
    try:
        began = time.monotonic()
        while time.monotonic() < began + 2:  # the query takes several seconds
            t0 = time.monotonic()
            try:
                outcome = f"seq {apply.read_checkpoint(con).seq}"
            except (duckdb.Error, RuntimeError, IndexError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            reads.append((t0, time.monotonic(), outcome))
            if ran:
                break  # the other query ended (a read waited for it): nothing more to see
            time.sleep(0.001)  # a tight loop can keep the other thread off the connection
    finally:
        _stop(con, t)
        con.close()
    assert ran, "the other thread's query never ran"
    q0, q1 = ran[0]
    # reads that began while the query surely held the connection (50 ms after its call)
    during = [r for r in reads if q0 + 0.05 < r[0] < q1]
    assert during, f"no read began while the other query ran ({q0:.3f}..{q1:.3f}): {reads[:5]}"
    for _, r1, outcome in during:
        answered_during = outcome == "seq 42" and r1 < q1
        assert not answered_during, f"a read answered while the other query ran: {outcome}"


def test_the_snapshotter_reads_the_checkpoint_on_its_own_cursor(tmp_path: Path) -> None:
    con = _open(tmp_path)
    started = threading.Event()
    t = _busy(con, started)
    try:
        for _ in range(200):
            assert _checkpoint(con).seq == 42
        assert t.is_alive(), "the other thread's query ended too soon to prove anything"
    finally:
        _stop(con, t)
        con.close()


def test_a_snapshot_counts_the_forgotten_users_it_holds_while_a_writer_adds_more(tmp_path: Path) -> None:
    """The snapshotter prunes every older snapshot when the forgotten_users count goes up, so
    the count must be the one of the copy. Read after the copy (as it was), a forget projected
    meanwhile was credited to a snapshot that still held the user's rows, and that snapshot
    outlived the forget (reading the count after the COMMIT fails this test)."""
    con = duckdb.connect(str(tmp_path / "live.duckdb"))
    apply.create_schema(con)
    stop = threading.Event()

    def forget_users() -> None:
        cur = con.cursor()
        n = 0
        while not stop.is_set():
            n += 1
            cur.execute(f"INSERT INTO {schema.FORGOTTEN_USERS.name} VALUES (?, ?)", [f"h{n}", n])
        cur.close()

    writer = threading.Thread(target=forget_users, daemon=True)
    writer.start()
    seen = []
    try:
        for i in range(15):
            dest = tmp_path / f"snap{i}.duckdb"
            written = write_snapshot(con, dest)
            copy = duckdb.connect(str(dest), read_only=True)
            try:
                row = copy.execute(f"SELECT count(*) FROM {schema.FORGOTTEN_USERS.name}").fetchone()
            finally:
                copy.close()
            assert row is not None and written.forgotten == row[0], (i, written.forgotten, row[0])
            seen.append(row[0])
    finally:
        stop.set()
        writer.join()
        con.close()
    assert seen == sorted(seen) and seen[-1] > seen[0], f"the writer added nothing meanwhile: {seen}"
