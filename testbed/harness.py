"""Real processes for integration tests: nats-server, ingest and query, all on loopback.

Every process is started with its own free ports and temp dirs, and stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client
from userstats.shared import events as ev
from userstats.shared.projection import RAW_PM_SUBJECTS, is_captured
from userstats.shared.subjects import DEFAULT_STREAM, event_subject

NATS_BIN = str(Path(sys.executable).parent / "nats-server")
READY = re.compile(rb"Server is ready")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """nats-server with JetStream in `store`; restartable on the same port and store."""

    def __init__(self, store: Path, port: int | None = None, extra: list[str] | None = None) -> None:
        self.store = store
        self.port = port or free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = store.parent / f"nats-{self.port}.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10) -> None:
        args = [NATS_BIN, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port), *self.extra]
        self._offset = self.log.stat().st_size if self.log.exists() else 0  # a restart waits for its own line
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY.search(self.log.read_bytes()[self._offset :]):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log.read_text()}")
            time.sleep(0.02)
        raise RuntimeError("nats-server did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        """SIGKILL: no goodbye to clients or routes, no leader transfer."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def lame_duck(self, timeout: float = 60) -> None:
        """SIGUSR2 (what `nats-server --signal ldm` sends): hand over leaderships, stop taking
        clients, close the existing ones over the lame-duck duration, exit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR2)
        self.proc.wait(timeout)
        self.proc = None


class NatsCluster:
    """`size` nats-server nodes on loopback joined by cluster routes, each with JetStream and
    its own store; nodes can be killed, put in lame-duck mode and restarted one by one."""

    def __init__(self, tmp: Path, size: int = 3, name: str = "userstats-test") -> None:
        self.name = name
        routes = [free_port() for _ in range(size)]
        self.nodes: list[NatsServer] = []
        for i, route_port in enumerate(routes):
            base = tmp / f"nats-n{i + 1}"
            base.mkdir(parents=True, exist_ok=True)
            conf = base / "nats.conf"
            others = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in routes if p != route_port)
            conf.write_text(
                f"server_name: n{i + 1}\n"
                f'server_tags: ["node:n{i + 1}"]\n'
                f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{route_port}\n  routes: [{others}]\n}}\n"
                # The shortest lame-duck duration nats-server accepts; the grace period before it
                # starts closing clients is cut from 10 s so a rolling restart stays quick.
                'lame_duck_duration: "30s"\nlame_duck_grace_period: "1s"\n'
            )
            self.nodes.append(NatsServer(base / "store", extra=["-c", str(conf)]))

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """Every node, comma-separated, as NATS_URL takes them."""
        return ",".join(self.urls)

    def node(self, server_name: str) -> NatsServer:
        return self.nodes[int(server_name.removeprefix("n")) - 1]

    def name_of(self, node: NatsServer) -> str:
        return f"n{self.nodes.index(node) + 1}"

    def start(self) -> None:
        for n in self.nodes:
            n.start()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def urls_from(self, first: NatsServer) -> str:
        """NATS_URL listing every node, `first` first (with NATS_RANDOMIZE=false it connects there)."""
        k = self.nodes.index(first)
        return ",".join(n.url for n in self.nodes[k:] + self.nodes[:k])

    async def ready(self, timeout: float = 30) -> None:
        """Wait until JetStream answers (the nodes have elected a meta leader)."""

        async def answers() -> bool:
            try:
                nc = await nats.connect(self.urls, max_reconnect_attempts=1, connect_timeout=1)
            except Exception:
                return False
            try:
                await nc.jetstream(timeout=1).account_info()
                return True
            except Exception:
                return False
            finally:
                await nc.close()

        await wait_for(answers, timeout=timeout, interval=0.2, what="the cluster's JetStream")


class Service:
    """`python -m userstats.ingest` or `python -m userstats.query` as a child process with its own env."""

    def __init__(self, module: str, env: dict[str, str], workdir: Path, port: int) -> None:
        self.module = module
        self.env = env
        self.workdir = workdir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{module}-{port}.log"

    def start(self) -> Service:
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"userstats.{self.module}"],
                env=self.env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        return self

    def health(self) -> tuple[int, dict[str, Any]]:
        r = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2)
        return r.status_code, r.json()

    def wait_healthy(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.module} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError, ValueError):
                code, body = self.health()
                last = body
                if code == 200:
                    return body
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.module} not healthy after {timeout} s: {last}\n{self.log.read_text()[-3000:]}"
        )

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None


class Stack:
    """One NATS server plus any number of ingest/query processes sharing it."""

    def __init__(
        self, tmp: Path, nats_server: NatsServer | NatsCluster, snapshot_interval: str | None = "0.3"
    ) -> None:
        self.tmp = tmp
        self.nats = nats_server
        # Tests take a snapshot every 0.3 s so replicas start fast; None: the product's default.
        self.snapshot_interval = snapshot_interval
        self.db_path = tmp / "ingest" / "userstats.duckdb"
        self.services: list[Service] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSTATS_", "NATS_"))}
        env.update(
            NATS_URL=self.nats.url,
            USERSTATS_DB_PATH=str(self.db_path),
            USERSTATS_TICK_INTERVAL="3600",
            USERSTATS_HTTP_HOST="127.0.0.1",
            USERSTATS_LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        if self.snapshot_interval is not None:
            env["USERSTATS_SNAPSHOT_INTERVAL"] = self.snapshot_interval
        env.update(extra)
        return env

    def ingest(self, **extra: str) -> Service:
        port = free_port()
        svc = Service("ingest", self.env(USERSTATS_INGEST_PORT=str(port), **extra), self.tmp, port)
        self.services.append(svc)
        return svc.start()

    def query(self, **extra: str) -> Service:
        port = free_port()
        workdir = self.tmp / f"replica-{port}"
        workdir.mkdir()
        env = self.env(USERSTATS_METRICS_PORT=str(port), USERSTATS_REPLICA_DIR=str(workdir), **extra)
        svc = Service("query", env, self.tmp, port)
        self.services.append(svc)
        return svc.start()

    def stop_all(self) -> None:
        for svc in reversed(self.services):
            svc.stop()


async def connect(url: str) -> Client:
    """A test client; `url` may list several servers, comma-separated (a cluster)."""
    return await nats.connect(url.split(","), name="userstats-test")


async def publish_all(
    nc: Client, events: Iterable[tuple[str, bytes]], flush_every: int = 5000, wait: bool = True
) -> int:
    """Core-publish like the bridge; returns the stream's last seq once all are stored.

    Core publishes have no flow control: a server that cannot store them as fast as they
    come drops some (seen with a million at full speed on 2 busy cores). So this keeps at
    most 50k unstored messages in flight, which a real bridge (channel event rates) never nears.
    """
    # counted in stream seqs, not messages: ingest deletes raw PMs meanwhile (some without a
    # new journal event, e.g. after a kill -9 between its append and the delete)
    before = await stream_last_seq(nc)
    n = 0  # the ones the stream captures (mediaUpdate, usercount and the like it does not)
    for sent, (subject, data) in enumerate(events, 1):
        await nc.publish(subject, data)
        n += is_captured(subject)
        if sent % flush_every == 0:
            await nc.flush()
            if wait and n > 50_000:
                await stored_to(nc, before + n - 50_000)
    await nc.flush()
    return await stored_to(nc, before + n) if wait else 0


async def stream_last_seq(nc: Client, stream: str = DEFAULT_STREAM) -> int:
    info = await nc.jetstream().stream_info(stream)
    return int(info.state.last_seq)


async def stored_to(nc: Client, seq: int, stream: str = DEFAULT_STREAM) -> int:
    """Wait until the stream's last seq reaches `seq` (core publishes are stored asynchronously)."""

    async def last() -> int:
        at = await stream_last_seq(nc, stream)
        return at if at >= seq else 0

    return int(await wait_for(last, timeout=120, interval=0.005, what=f"the stream at seq {seq}"))


async def stored(nc: Client, at_least: int, stream: str = DEFAULT_STREAM) -> int:
    """Wait until the stream holds `at_least` messages (core publishes are stored asynchronously)."""

    async def count() -> int:
        info = await nc.jetstream().stream_info(stream)
        return int(info.state.last_seq) if info.state.messages >= at_least else 0

    # S2 compression and the erasure of raw PMs beside a loaded machine: allow two minutes
    return int(await wait_for(count, timeout=120, interval=0.005, what=f"{at_least} messages in the stream"))


async def request(
    nc: Client, body: dict[str, Any] | bytes, subject: str = "kryten.userstats.command", timeout: float = 5
) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=timeout)
    return json.loads(msg.data)


async def wait_for(
    predicate: Any, timeout: float = 30, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Await until `predicate()` (sync or async) returns a truthy value; return it."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def raw_pms(nc: Client) -> int:
    """Raw private messages still in the stream (ingest erases each once it is counted)."""
    info = await nc.jetstream().stream_info(DEFAULT_STREAM, subjects_filter=RAW_PM_SUBJECTS)
    return sum((info.state.subjects or {}).values())


async def pms_deleted(nc: Client, timeout: float = 60.0) -> None:
    """Wait until no raw PM is left in the stream (ingest deletes each, on a task of its own,
    once its journal event is stored)."""

    async def none_left() -> bool:
        return await raw_pms(nc) == 0

    await wait_for(none_left, timeout=timeout, interval=0.05, what="ingest to delete every raw PM")


async def settled(nc: Client, ingest: Service | Callable[[], int], timeout: float = 60.0) -> int:
    """The stream's last seq once ingest's checkpoint has reached it. Ingest appends the "pm"
    journal events of a batch's raw PMs before it announces the batch's checkpoint, so from
    then on every one of them is stored and projected, and the seq only grows with new events
    (and ingest's ticks): it is what publish_all's seq becomes once ingest has counted the PMs.
    `ingest`: the service, or a function giving its checkpoint (an in-process loop)."""

    def checkpoint() -> int:
        if not isinstance(ingest, Service):
            return ingest()
        code, body = ingest.health()
        return int(body.get("checkpoint_seq") or 0) if code == 200 else -1

    async def reached() -> int:
        at = checkpoint()  # first: the events appended before it was announced are stored
        last = await stream_last_seq(nc)
        return last if at >= last else 0

    return int(
        await wait_for(reached, timeout=timeout, interval=0.05, what="ingest to reach the stream's end")
    )


async def caught_up(nc: Client, svc: Service, pm_wait: float = 15.0) -> int:
    """Wait until the service (ingest or replica) reflects the stream's last sequence.

    Ingest appends a "pm" journal event for each raw PM before it deletes the raw one (and
    before it announces the batch's checkpoint), so this also waits (at most `pm_wait`
    seconds, ingest may not be running) until no raw PM is left, then for the events after."""
    last, seq = await stream_last_seq(nc), -1
    seen: list[Any] = []

    def at(target: int) -> int:
        code, body = svc.health()
        seen[:] = [code, body]
        seq = body.get("checkpoint_seq", body.get("as_of_seq")) or 0
        return int(seq) if code == 200 and seq >= target else 0

    async def no_raw_pm() -> bool:
        return await raw_pms(nc) == 0

    while seq < last:
        try:
            seq = int(
                await wait_for(
                    functools.partial(at, last), timeout=60, what=f"{svc.module} to reach seq {last}"
                )
            )
        except AssertionError as exc:  # say where it stood, and what it logged
            tail = svc.log.read_text(errors="replace")[-4000:] if svc.log.exists() else "(no log)"
            raise AssertionError(f"{exc}; last /health {seen}; log tail:\n{tail}") from None
        with contextlib.suppress(AssertionError):
            await wait_for(no_raw_pm, timeout=pm_wait, interval=0.02, what="no raw PM left")
        last = await stream_last_seq(nc)
    if svc.module == "query":
        # /health's as_of_seq is what the replica projected; its replies reflect what it has
        # written to its tables, at most a moment later, or at once for a min_seq read. Ask
        # this replica itself (over its HTTP API: a NATS request goes to any replica of the
        # queue group), so that its next plain reads see everything.
        url = f"http://127.0.0.1:{svc.port}/api/v1/system.stats"
        r = await asyncio.to_thread(httpx.get, url, params={"min_seq": last, "timeout": 30}, timeout=35)
        assert r.status_code == 200 and r.json()["as_of_seq"] >= last, (r.status_code, r.text[:300])
    return seq


def metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


async def metric_becomes(svc: Service, name: str, value: float) -> None:
    """Replica gauges are refreshed once a second after batches land: wait for the value."""
    await wait_for(lambda: metric(svc.metrics(), name) == value, timeout=10, what=f"{name} == {value}")


def envelope(event_name: str, payload: Any, *, channel: str, domain: str, time_us: int) -> tuple[str, bytes]:
    """(subject, bytes) of an event as the bridge publishes it, stamped `time_us`."""
    env = ev.EnvelopeOut(
        event_name=event_name,
        payload=payload,
        channel=channel,
        domain=domain,
        timestamp=ev.iso_from_us(time_us),
        correlation_id="test",
    )
    return event_subject(channel, event_name), ev.encode(env)


def chat_envelope(user: str, text: str, *, channel: str, domain: str, time_us: int) -> tuple[str, bytes]:
    """A chatMsg as the bridge publishes it, at `time_us` (CyTube's `time` in ms follows it)."""
    payload = {"username": user, "msg": text, "time": time_us // 1000, "meta": {}}
    return envelope("chatMsg", payload, channel=channel, domain=domain, time_us=time_us)
