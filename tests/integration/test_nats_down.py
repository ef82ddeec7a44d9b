"""Every command line, and the Python client, with NATS unreachable: a refused port, a server
that accepts but never speaks, refused credentials. Each ends with its exit status and one
clear line within a bounded time; nothing retries forever, nothing prints a traceback.

(nats-py's own first connect retries forever for max_reconnect_attempts <= 0 and logs a
traceback per attempt; userstats-ask used to run for minutes like that.)
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from userstats.shared import apply

from testbed.harness import NatsServer, free_port
from userstats.client import UserstatsClient, UserstatsUnavailable

BIN = Path(sys.executable).parent


def run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> tuple[int, str, str, float]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("USERSTATS_", "NATS_"))}
    started = time.monotonic()
    out = subprocess.run(
        args, env={**base, **env}, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    return out.returncode, out.stdout, out.stderr, time.monotonic() - started


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def problems(stderr: str) -> list[str]:
    """The lines a service logs above INFO."""
    return [line for line in lines(stderr) if " ERROR " in line or " WARNING " in line]


@pytest.fixture
def silent() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def sqlite_071(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (username TEXT, first_seen_at TEXT, last_seen_at TEXT)")
    con.execute("CREATE TABLE message_counts (username TEXT, channel TEXT, domain TEXT, message_count INT)")
    con.execute("INSERT INTO message_counts VALUES ('a', 'c', 'cytu.be', 3)")
    con.commit()
    con.close()
    return path


ONE_SHOT = {
    "userstats-ask": ["system.stats"],
    "userstats-sim": ["--count", "10"],
    "userstats-ingest rebuild": ["rebuild"],
    "userstats-ingest import-sqlite": ["import-sqlite", "{db}"],
}


@pytest.mark.parametrize("name", sorted(ONE_SHOT))
def test_one_shot_commands_fail_at_once_with_one_line(name: str, tmp_path: Path) -> None:
    port = free_port()
    exe = str(BIN / name.split(maxsplit=1)[0])
    args = [str(sqlite_071(tmp_path / "u.db")) if a == "{db}" else a for a in ONE_SHOT[name]]
    env = {
        "NATS_URL": f"nats://user:secret@127.0.0.1:{port}",
        "USERSTATS_DB_PATH": str(tmp_path / "x.duckdb"),
    }
    code, out, err, seconds = run([exe, *args], env, tmp_path)
    assert code == 1, (out, err)
    assert "import-sqlite" in name or out == ""  # import-sqlite prints its progress first
    (line,) = lines(err) if "import-sqlite" not in name else problems(err)
    assert line.endswith(f"cannot connect to NATS at nats://127.0.0.1:{port}: connection refused"), err
    assert "secret" not in err and "Traceback" not in err
    assert seconds < 10, f"{name} took {seconds:.1f} s"


def test_ask_with_a_server_that_never_answers_is_bounded_by_its_timeout(silent: int, tmp_path: Path) -> None:
    code, out, err, seconds = run(
        [str(BIN / "userstats-ask"), "--nats-url", f"nats://127.0.0.1:{silent}", "--timeout", "1", "x.y"],
        {},
        tmp_path,
    )
    assert (code, out) == (1, "")
    assert lines(err) == [
        f"userstats-ask: cannot connect to NATS at nats://127.0.0.1:{silent}: "
        "no answer within 1 s (connect_timeout)"
    ]
    assert 1 <= seconds < 8


@pytest.mark.parametrize("module", ["ingest", "query"])
def test_services_try_for_the_startup_wait_then_exit_with_one_error(module: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "NATS_URL": f"nats://127.0.0.1:{port}",
        "NATS_STARTUP_WAIT": "2",
        "USERSTATS_DB_PATH": str(tmp_path / "u.duckdb"),
        "USERSTATS_INGEST_PORT": str(free_port()),
        "USERSTATS_METRICS_PORT": str(free_port()),
        "USERSTATS_HTTP_HOST": "127.0.0.1",
    }
    code, _, err, seconds = run([str(BIN / f"userstats-{module}")], env, tmp_path)
    assert code == 1, err
    assert problems(err) == [lines(err)[-1]], err  # one ERROR line, the last one; no retry warnings
    assert lines(err)[-1].endswith(
        f"cannot connect to NATS at nats://127.0.0.1:{port} within 2 s: connection refused "
        "(nats.startup_wait_seconds / NATS_STARTUP_WAIT)"
    ), err
    assert "Traceback" not in err
    assert sum("waiting for NATS" in line for line in lines(err)) == 1  # said once, not per attempt
    assert 2 <= seconds < 15


def test_refused_credentials_end_a_service_at_once(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "store", extra=["--user", "u", "--pass", "right"])
    server.start()
    try:
        env = {
            "NATS_URL": f"nats://u:wrong@127.0.0.1:{server.port}",
            "USERSTATS_DB_PATH": str(tmp_path / "u.duckdb"),
            "USERSTATS_INGEST_PORT": str(free_port()),
            "USERSTATS_HTTP_HOST": "127.0.0.1",
        }  # the start-up wait stays 30 s: retrying the same credentials cannot help
        code, _, err, seconds = run([str(BIN / "userstats-ingest")], env, tmp_path)
        assert code == 1 and seconds < 10, err
        assert problems(err)[-1].endswith(
            f"cannot connect to NATS at nats://127.0.0.1:{server.port}: authorization violation "
            "(check the user, password, token or credentials)"
        ), err
        assert "wrong" not in err
    finally:
        server.stop()


def test_dead_letters_read_the_file_when_nats_is_down(tmp_path: Path) -> None:
    port = free_port()
    env = {"NATS_URL": f"nats://127.0.0.1:{port}", "USERSTATS_DB_PATH": "data/userstats.duckdb"}
    code, out, err, seconds = run([str(BIN / "userstats-ingest"), "dead-letters"], env, tmp_path)
    assert code == 1 and out == "" and seconds < 10
    note, line = lines(err)  # that NATS is unreachable, then why it cannot read the file
    assert note.endswith("connection refused; reading the database file instead")
    assert (
        f"ERROR   userstats.ingest: no database at {tmp_path / 'data' / 'userstats.duckdb'} (database.path"
        in line
    )
    assert "Traceback" not in err
    (tmp_path / "data").mkdir()
    con = duckdb.connect(str(tmp_path / "data" / "userstats.duckdb"))
    apply.create_schema(con)
    con.close()
    code, out, err, seconds = run([str(BIN / "userstats-ingest"), "dead-letters"], env, tmp_path)
    assert code == 0 and '"total": 0' in out and seconds < 10, err
    (note,) = lines(err)
    assert note.endswith("connection refused; reading the database file instead")


def test_make_run_with_an_unreachable_nats_url_starts_nothing(tmp_path: Path) -> None:
    port = free_port()
    env = {"NATS_URL": f"nats://127.0.0.1:{port}"}
    code, out, err, seconds = run([str(BIN / "userstats-run"), "--data", str(tmp_path / "d")], env, tmp_path)
    assert code == 1 and out == "" and seconds < 10
    assert lines(err) == [
        f"userstats-run: cannot connect to NATS at nats://127.0.0.1:{port}: connection refused"
    ]
    assert not (tmp_path / "d" / "userstats.duckdb").exists()  # ingest was never started


async def test_the_client_raises_unavailable_at_once(silent: int) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(UserstatsUnavailable) as info:
        await UserstatsClient.connect(f"nats://127.0.0.1:{port}")
    assert time.monotonic() - started < 2
    assert str(info.value) == f"cannot connect to NATS at nats://127.0.0.1:{port}: connection refused"
    started = time.monotonic()
    with pytest.raises(UserstatsUnavailable, match="no answer within 1 s"):
        await UserstatsClient.connect(f"nats://127.0.0.1:{silent}", connect_timeout=1)
    assert 1 <= time.monotonic() - started < 3
    await asyncio.sleep(0)
