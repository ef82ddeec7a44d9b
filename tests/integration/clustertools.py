"""What the cluster tests share: a bridge stand-in, request load, health sampling, leaders."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client
from userstats.shared.projection import is_captured, is_pm_subject
from userstats.shared.snapshots import POINTER_STREAM, SNAPSHOT_STREAM
from userstats.shared.subjects import DEFAULT_STREAM
from userstats.sim.generator import BRIDGE_PM_WEIGHT, Simulator

from testbed.harness import NatsCluster, NatsServer, Service, wait_for
from tests.integration.streamtools import pm_key

STORES = (DEFAULT_STREAM, POINTER_STREAM, SNAPSHOT_STREAM)
FIGURES: list[str] = []  # measurements the cluster tests report (printed in the terminal summary)


async def connect_to(servers: list[str], name: str) -> Client:
    """A client on servers[0] that fails over to the others in order (as NATS_RANDOMIZE=false)."""
    return await nats.connect(
        servers, name=name, dont_randomize=True, reconnect_time_wait=0.5, max_reconnect_attempts=-1
    )


def order_from(cluster: NatsCluster, first: NatsServer) -> list[str]:
    return cluster.urls_from(first).split(",")


# The bridge stand-in sends PMs at a real bridge's rate (BRIDGE_PM_WEIGHT, 1 a second at 1,000
# events/s), not the simulator's 3%: with 3 servers on this 2-core machine erasing 30 raw PMs a
# second (each erase rewrites the message's whole block on every server, nats-server filestore
# eraseMsg), a leader handover took about 1 s instead of tens of ms (the README says so).


class Bridge:
    """A stand-in for kryten-robot in a process of its own (as the bridge is): core-publishes
    simulator events at a fixed rate and records when each one went out (CLOCK_MONOTONIC,
    the same clock as this process's time.monotonic()). Its own process keeps the pace even
    while the test's event loop is busy with requests and health checks."""

    def __init__(self, servers: list[str], seed: int, rate: float, workdir: Path) -> None:
        self.servers, self.seed, self.rate = servers, seed, rate
        self.out = workdir / f"bridge-{seed}.json"
        self.log = workdir / f"bridge-{seed}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sent: list[tuple[float, bytes]] = []  # (time.monotonic(), envelope), after stop()
        self.subjects: dict[bytes, str] = {}

    def start(self, timeout: float = 20) -> None:
        args = [sys.executable, "-m", "tests.integration.clustertools", ",".join(self.servers)]
        args += [str(self.seed), str(self.rate), str(self.out)]
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while b"publishing" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bridge stand-in did not start: {self.log.read_text()}")
            time.sleep(0.02)

    async def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.proc.wait, 30)
        assert code == 0, self.log.read_text()[-2000:]
        times = json.loads(self.out.read_text())
        events = Simulator(seed=self.seed, pm_weight=BRIDGE_PM_WEIGHT).events(len(times))
        for t, (subject, data) in zip(times, events, strict=True):
            self.sent.append((t, data))
            self.subjects[data] = subject

    def lost(self, stored: set[bytes], redacted: Collection[tuple[str, int]]) -> list[float]:
        """Publish times of the events the stream did not store, of those it captures (the
        subjects the projection handles; mediaUpdate and the like are never stored). A raw PM
        that ingest erased after counting it is not lost: `redacted` holds the (sender, event
        time) of each PM the stream keeps a "pm" journal event for (streamtools.redacted_pms)."""
        return [
            t
            for t, data in self.sent
            if data not in stored
            and is_captured(self.subjects[data])
            and not (is_pm_subject(self.subjects[data]) and pm_key(data) in redacted)
        ]


async def _bridge_main(servers: list[str], seed: int, rate: float, out: Path) -> None:
    nc = await connect_to(servers, "bridge-stand-in")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    events = Simulator(seed=seed, pm_weight=BRIDGE_PM_WEIGHT).events(10**7)
    times: list[float] = []
    print("publishing", flush=True)
    started = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        while len(times) < due:
            subject, data = next(events)
            await nc.publish(subject, data)  # buffered by the client while it reconnects
            times.append(time.monotonic())
        await asyncio.sleep(0.001)
    await nc.flush(timeout=10)
    await nc.close()
    out.write_text(json.dumps(times))


class Askers:
    """`n` requesters asking user.stats in a loop through one client; records (time, ok)."""

    def __init__(self, nc: Client, n: int = 4, timeout: float = 2.0) -> None:
        self.nc, self.n, self.timeout = nc, n, timeout
        self.results: list[tuple[float, bool]] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._ask(k)) for k in range(self.n)]

    async def _ask(self, k: int) -> None:
        body = json.dumps({"command": "user.stats", "username": f"420GUser{k}"}).encode()
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                msg = await self.nc.request("kryten.userstats.command", body, timeout=self.timeout)
                self.results.append((sent, bool(json.loads(msg.data)["success"])))
            except Exception:  # a timeout or no responders
                self.results.append((sent, False))
            await asyncio.sleep(0.01)  # a steady load that leaves the bridge and the services CPU

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def failures(self) -> list[float]:
        return [t for t, ok in self.results if not ok]

    def longest_gap(self) -> float:
        """The longest time between two requests that got an answer: how long queries stopped."""
        ok = sorted(t for t, good in self.results if good)
        return max((b - a for a, b in itertools.pairwise(ok)), default=0.0)


@dataclass
class Sample:
    t: float
    code: int | None  # None: no answer
    status: str
    body: dict[str, Any] = field(default_factory=dict)


class HealthLog:
    """Samples /health (and /metrics) of each service every `interval` s."""

    def __init__(self, services: dict[str, Service], interval: float = 0.2) -> None:
        self.services = services
        self.interval = interval
        self.samples: dict[str, list[Sample]] = {name: [] for name in services}
        self.metrics: dict[str, list[tuple[float, str]]] = {name: [] for name in services}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            while not self._stop.is_set():
                for name, svc in self.services.items():
                    t = time.monotonic()
                    try:
                        r = await http.get(f"http://127.0.0.1:{svc.port}/health")
                        body = r.json()
                        self.samples[name].append(Sample(t, r.status_code, str(body.get("status")), body))
                        m = await http.get(f"http://127.0.0.1:{svc.port}/metrics")
                        self.metrics[name].append((t, m.text))
                    except (httpx.HTTPError, ValueError):
                        self.samples[name].append(Sample(t, None, "no answer"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    def transitions(self, name: str, since: float) -> list[tuple[float, int | None, str]]:
        """(seconds after `since`, code, status) each time the status changed."""
        out: list[tuple[float, int | None, str]] = []
        for s in self.samples[name]:
            if not out or out[-1][2] != s.status:
                out.append((round(s.t - since, 2), s.code, s.status))
        return out

    def unhealthy(self, name: str, after: float, needle: str) -> list[Sample]:
        return [s for s in self.samples[name] if s.t >= after and s.code == 503 and needle in s.status]

    def metric_seen(self, name: str, after: float, line: str) -> bool:
        return any(line in text.splitlines() for t, text in self.metrics[name] if t >= after)


async def leader(nc: Client, stream: str = DEFAULT_STREAM) -> str:
    info = await nc.jetstream(timeout=2).stream_info(stream)
    assert info.cluster is not None and info.cluster.leader, info.cluster
    return info.cluster.leader


async def step_down(nc: Client, stream: str, preferred: str | None = None) -> None:
    body = json.dumps({"placement": {"preferred": preferred}}).encode() if preferred else b""
    msg = await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", body, timeout=5)
    reply = json.loads(msg.data)
    assert reply.get("success"), reply


async def move_leader(nc: Client, stream: str, to: str) -> None:
    """Make `to` the stream's leader (a stepdown with a preferred successor)."""

    async def there() -> bool:
        try:
            if await leader(nc, stream) == to:
                return True
            await step_down(nc, stream, to)
        except Exception:  # an election under way: ask again
            return False
        return False

    await wait_for(there, timeout=30, interval=0.5, what=f"{stream} led by {to}")


async def all_current(nc: Client, streams: tuple[str, ...] = STORES, timeout: float = 60) -> None:
    """Wait until every store has a leader and every replica is current with no lag."""
    js = nc.jetstream(timeout=2)

    async def current() -> bool:
        for name in streams:
            try:
                info = await js.stream_info(name)
            except Exception:
                return False
            c = info.cluster
            if c is None or not c.leader:
                return False
            peers = c.replicas or []
            if len(peers) + 1 < int(info.config.num_replicas or 1):
                return False
            if not all(p.current and not p.offline and not p.lag for p in peers):
                return False
        return True

    await wait_for(current, timeout=timeout, interval=0.25, what="every replica of every store current")


def spec_gauges(text: str) -> dict[str, str]:
    """The spec's userstats_total_* gauges of a replica's /metrics (equal on every replica)."""
    return {
        line.split(" ")[0]: line.split(" ")[1]
        for line in text.splitlines()
        if line.startswith("userstats_total_") and " " in line
    }


if __name__ == "__main__":  # the bridge stand-in: servers seed rate out.json
    asyncio.run(_bridge_main(sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])))
