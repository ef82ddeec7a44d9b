"""The command lines: help, version, config validation, clear start-up errors, `make run`'s launcher."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shared import __version__
from tests.harness import NatsServer, Stack, free_port


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("USERSTATS_", "NATS_"))}
    return subprocess.run(
        [sys.executable, "-m", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
    )


@pytest.mark.parametrize("module", ["ingest", "query", "sim"])
def test_help(module: str) -> None:
    out = run(module, "--help")
    assert out.returncode == 0 and "usage:" in out.stdout


@pytest.mark.parametrize("module", ["ingest", "query"])
def test_version(module: str) -> None:
    out = run(module, "--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_validate_config_masks_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"nats": {"servers": ["nats://h:4222"], "password": "${PW}"}, "channels": []}))
    out = run("query", "--config", str(cfg), "--validate-config", env={"PW": "hunter2"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["nats"]["password"] == "***"
    assert "hunter2" not in out.stdout + out.stderr
    assert "configuration OK" in out.stderr


def test_invalid_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"metrics": {"port": "eighty"}}))
    out = run("ingest", "--config", str(cfg))
    assert out.returncode == 2
    assert "$.metrics.port" in out.stderr
    missing = run("ingest", "--config", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read config file" in missing.stderr


def test_unreachable_nats_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "NATS_URL": f"nats://user:secret@127.0.0.1:{port}",
        "USERSTATS_DB_PATH": str(tmp_path / "u.duckdb"),
        "USERSTATS_INGEST_PORT": str(free_port()),
        "NATS_STARTUP_WAIT": "2",
    }
    out = run("ingest", env=env)
    assert out.returncode == 1
    assert f"cannot connect to NATS at nats://127.0.0.1:{port} within 2 s" in out.stderr
    assert "secret" not in out.stderr


def test_sqlite_database_path_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "userstats.db"
    sqlite3.connect(db).execute("CREATE TABLE users (username TEXT)").connection.close()
    out = run("ingest", env={"USERSTATS_DB_PATH": str(db), "USERSTATS_INGEST_PORT": str(free_port())})
    assert out.returncode == 1 and "is a SQLite file" in out.stderr


def test_busy_metrics_port_is_a_clear_error(nats_server: NatsServer) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run(
            "query",
            env={
                "NATS_URL": nats_server.url,
                "USERSTATS_METRICS_PORT": str(port),
                "USERSTATS_HTTP_HOST": "127.0.0.1",
            },
        )
    assert out.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in out.stderr


def children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def launch(
    tmp_path: Path, extra: list[str], env_extra: dict[str, str]
) -> tuple[subprocess.Popen[bytes], int, int]:
    query_port, ingest_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSTATS_", "NATS_"))}
    env.update(
        USERSTATS_METRICS_PORT=str(query_port),
        USERSTATS_INGEST_PORT=str(ingest_port),
        USERSTATS_HTTP_HOST="127.0.0.1",
    )
    env.update(env_extra)
    args = [
        sys.executable,
        "-m",
        "launcher",
        "--data",
        str(tmp_path / "data"),
        "--nats-monitor-port",
        "0",
        *extra,
    ]
    with (tmp_path / "run.log").open("w") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    healthy = False
    while time.monotonic() < deadline and not healthy:
        time.sleep(0.2)
        with contextlib.suppress(httpx.HTTPError):
            healthy = all(
                httpx.get(f"http://127.0.0.1:{p}/health", timeout=1).status_code == 200
                for p in (query_port, ingest_port)
            )
    assert healthy, (tmp_path / "run.log").read_text()
    return proc, query_port, ingest_port


def stop_launcher(proc: subprocess.Popen[bytes], kids: set[int], tmp_path: Path) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert all(
        not Path(f"/proc/{k}").exists() or "Z" in Path(f"/proc/{k}/stat").read_text().split()[2] for k in kids
    )
    text = (tmp_path / "run.log").read_text()
    assert "ingest stopped at seq" in text and "query replica stopping" in text


def test_launcher_runs_everything_and_ctrl_c_stops_all(tmp_path: Path) -> None:
    nats_port = free_port()
    proc, _, _ = launch(tmp_path, ["--nats-port", str(nats_port), "--sim-rate", "200"], {})
    try:
        kids = children(proc.pid)
        assert len(kids) == 4  # nats-server, ingest, query, simulator
        assert (tmp_path / "data" / "userstats.duckdb").exists()
        # `make demo` configures the simulator's channels: kryten-cli (which never sends a
        # channel, whatever its --channel) gets the first one's report
        kryten = str(Path(sys.executable).parent / "kryten")
        cmd = [kryten, "--nats", f"nats://127.0.0.1:{nats_port}", "--channel", "MovieNight"]
        deadline = time.monotonic() + 30
        top: list[dict[str, object]] = []
        while not top and time.monotonic() < deadline:
            out = subprocess.run(
                [*cmd, "userstats", "all", "--format", "json"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert out.returncode == 0, out.stderr
            top = json.loads(out.stdout)["channel"]["top_users"]
            time.sleep(0.5)
        assert top and all(str(row["username"]).startswith("420GUser") for row in top)
        stop_launcher(proc, kids, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_launcher_uses_the_servers_a_config_names(tmp_path: Path, nats_server: NatsServer) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"nats": {"servers": [nats_server.url]}}))
    proc, _, _ = launch(tmp_path, ["--config", str(cfg)], {})
    try:
        kids = children(proc.pid)
        assert len(kids) == 2  # ingest and query only: no local nats-server
        stop_launcher(proc, kids, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ask_tool_against_a_running_stack(stack: Stack) -> None:
    stack.ingest().wait_healthy()
    stack.query().wait_healthy()
    env = {"NATS_URL": stack.nats.url}
    ok = run("query.ask", "system.ping", env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["data"]["pong"] is True
    seed = run(
        "query.ask", "--subject", "cytube.query.userstats.cytu.be.user.stats", "username=nobody", env=env
    )
    assert seed.returncode == 0 and json.loads(seed.stdout)["data"]["username"] == "nobody"
    bad = run("query.ask", "user.stats", env=env)
    assert bad.returncode == 1 and json.loads(bad.stdout)["error"] == "username required"
