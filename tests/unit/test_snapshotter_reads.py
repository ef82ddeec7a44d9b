"""The snapshotter reads the checkpoint while the projector may be writing on the same
DuckDB connection in another thread. On the connection itself that second call fails
("connection is busy", seen in the disk-full fault test) or, in a race, finds no row; on a
cursor of its own it works."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import duckdb
import pytest
from userstats.ingest.snapshotter import _checkpoint
from userstats.shared import apply, schema


def _busy(con: duckdb.DuckDBPyConnection, started: threading.Event) -> threading.Thread:
    def work() -> None:
        started.set()
        with contextlib.suppress(duckdb.InterruptException):  # the test is over
            con.execute("SELECT count(*) FROM range(3000000000) a WHERE a % 7 = 3").fetchall()

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


def test_the_connection_itself_is_busy_while_another_thread_is_on_it(tmp_path: Path) -> None:
    con = _open(tmp_path)
    started = threading.Event()
    t = _busy(con, started)
    try:
        deadline = time.monotonic() + 60  # until the other thread's query runs (a busy machine
        # may start it late); then the call is refused, or reads no row at all
        with pytest.raises((duckdb.Error, RuntimeError), match=r"busy|checkpoint row missing"):
            while time.monotonic() < deadline:
                apply.read_checkpoint(con)
                time.sleep(0.001)  # a tight loop can keep the other thread off the connection
    finally:
        _stop(con, t)
        con.close()


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
