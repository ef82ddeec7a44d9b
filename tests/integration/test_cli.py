"""The command lines: help, version, config validation, clear start-up errors, `make run`'s launcher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from userstats.shared import __version__

from testbed.harness import NatsServer, Stack, connect, free_port
from tests.integration.streamtools import read_stream


def _module(name: str) -> str:
    return name if name.startswith("userstats.") else f"userstats.{name}"


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("USERSTATS_", "NATS_"))}
    return subprocess.run(
        [sys.executable, "-m", _module(args[0]), *args[1:]],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
    )


@pytest.mark.parametrize("module", ["userstats.ingest", "userstats.query", "userstats.sim"])
def test_help(module: str) -> None:
    out = run(module, "--help")
    assert out.returncode == 0 and "usage:" in out.stdout


@pytest.mark.parametrize("module", ["userstats.ingest", "userstats.query", "userstats.query.ask"])
def test_version(module: str) -> None:
    out = run(module, "--version")
    assert out.returncode == 0 and __version__ in out.stdout


def test_ask_help_explains_every_option() -> None:
    out = " ".join(run("userstats.query.ask", "--help").stdout.split())  # argparse wraps lines
    assert "NATS server(s), comma-separated (default: $NATS_URL" in out
    assert "seconds to wait for NATS to answer the connection, and then for the reply" in out


@pytest.mark.parametrize("module", ["userstats.ingest", "userstats.query", "userstats.sim"])
def test_a_bad_log_level_is_refused_before_anything_runs(module: str) -> None:
    out = run(module, "--log-level", "LOUD", *(["--validate-config"] if module != "userstats.sim" else []))
    assert out.returncode == 2 and "'LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in out.stderr
    assert run(module, "--log-level", "warning", "--help").returncode == 0  # any case


def test_validate_config_masks_urls_and_survives_a_closed_pipe(tmp_path: Path) -> None:
    env = {"NATS_URL": "nats://bot:hunter2@127.0.0.1:4222"}
    out = run("ingest", "--validate-config", env=env)
    assert out.returncode == 0 and "hunter2" not in out.stdout + out.stderr
    assert json.loads(out.stdout)["nats"]["servers"] == ["nats://bot:***@127.0.0.1:4222"]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("USERSTATS_", "NATS_"))}
    piped = subprocess.run(
        f"{sys.executable} -m userstats.ingest --validate-config | head -n 2",
        shell=True,
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=30,
        check=False,
    )
    assert piped.stdout.splitlines() == ["{", '  "service": {']
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr, piped.stderr


def test_unknown_config_key_stops_the_service_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"metrcs": {"port": 1234}}))
    out = run("query", "--config", str(cfg), "--validate-config")
    assert out.returncode == 2 and "configuration OK" not in out.stderr
    assert f"unknown key in {cfg}: $.metrcs (did you mean 'metrics'?)" in out.stderr


def test_the_simulator_starts_now_by_default(tmp_path: Path) -> None:
    out = run("sim", "--count", "20", "--jsonl", str(tmp_path / "e.jsonl"))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    first = datetime.fromisoformat(lines[0]["envelope"]["timestamp"])
    assert abs((datetime.now(UTC) - first).total_seconds()) < 60
    assert lines[0]["envelope"]["event_name"] == "userlist"  # who is there, first


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
    tmp_path: Path, extra: list[str], env_extra: dict[str, str], host: str | None = "127.0.0.1"
) -> tuple[subprocess.Popen[bytes], int, int]:
    query_port, ingest_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSTATS_", "NATS_"))}
    env.update(USERSTATS_METRICS_PORT=str(query_port), USERSTATS_INGEST_PORT=str(ingest_port))
    if host is not None:
        env["USERSTATS_HTTP_HOST"] = host
    env.update(env_extra)
    args = [
        sys.executable,
        "-m",
        "userstats.launcher",
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


def listening(port: int) -> set[str]:
    """The addresses a TCP port listens on (IPv4), from /proc/net/tcp."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hexport = local.split(":")
        if state == "0A" and int(hexport, 16) == port:
            out.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return out


async def test_launcher_runs_everything_and_ctrl_c_stops_all(tmp_path: Path) -> None:
    nats_port = free_port()
    proc, query_port, ingest_port = launch(
        tmp_path, ["--nats-port", str(nats_port), "--sim-rate", "200"], {}, host=None
    )
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
            out = await asyncio.to_thread(
                subprocess.run,
                [*cmd, "userstats", "all", "--format", "json"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert out.returncode == 0, out.stderr
            top = json.loads(out.stdout)["channel"]["top_users"]
            await asyncio.sleep(0.5)
        assert top and all(str(row["username"]).startswith("420GUser") for row in top)
        # a local run is not for the network, and the banner says where it is
        assert listening(query_port) == listening(ingest_port) == {"127.0.0.1"}
        assert f"metrics http://127.0.0.1:{query_port}/metrics" in (tmp_path / "run.log").read_text()
        # the stream existed before the simulator published: its very first event is stored
        nc = await connect(f"nats://127.0.0.1:{nats_port}")
        try:
            first = next(i for i in await read_stream(nc) if i.subject.startswith("kryten.events."))
        finally:
            await nc.close()
        assert first.subject == "kryten.events.cytube.420grindhouse.userlist"
        stop_launcher(proc, kids, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_launcher_uses_the_servers_a_config_names(tmp_path: Path, nats_server: NatsServer) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"nats": {"servers": [nats_server.url]}}))
    proc, query_port, _ = launch(tmp_path, ["--config", str(cfg)], {}, host="0.0.0.0")
    try:
        kids = children(proc.pid)
        assert len(kids) == 2  # ingest and query only: no local nats-server
        assert listening(query_port) == {"0.0.0.0"}  # USERSTATS_HTTP_HOST still decides (compose)
        stop_launcher(proc, kids, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ask_tool_against_a_running_stack(stack: Stack) -> None:
    stack.ingest().wait_healthy()
    stack.query().wait_healthy()
    env = {"NATS_URL": stack.nats.url}
    ok = run("userstats.query.ask", "system.ping", env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["data"]["pong"] is True
    seed = run(
        "userstats.query.ask",
        "--subject",
        "cytube.query.userstats.cytu.be.user.stats",
        "username=nobody",
        env=env,
    )
    assert seed.returncode == 0 and json.loads(seed.stdout)["data"]["username"] == "nobody"
    bad = run("userstats.query.ask", "user.stats", env=env)
    assert bad.returncode == 1 and json.loads(bad.stdout)["error"] == "username required"
