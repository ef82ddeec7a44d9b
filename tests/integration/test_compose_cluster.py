"""Issue 21: docker-compose.cluster.yml on a real Docker engine: three NATS containers, R3 stores.

The same engine, stand-in images and Compose helper as tests/integration/test_compose.py
(its fixtures are imported). The stack is the user's `docker compose -f docker-compose.yml -f
docker-compose.cluster.yml`, with free host ports on 127.0.0.1 and a throwaway project.

Under a steady bridge load, one NATS container is `docker kill`ed (SIGKILL) and started
again, twice: first a node that does not lead the stream (it keeps its leader, so the bridge,
connected to the surviving nodes, must lose nothing), then the stream's leader (what arrives
while no node leads the stream is lost: README "Running on a NATS cluster"; the test bounds
it by the election timeout). After each, the stack is healthy, the node caught up, and the
replica's counts exact for what the stream stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client
from userstats.shared.subjects import DEFAULT_STREAM

from testbed.harness import request, wait_for
from tests.dockerstack import Compose, docker, free_port
from tests.integration import test_compose
from tests.integration.clustertools import FIGURES, STORES, Askers, Bridge, all_current, connect_to, leader
from tests.integration.streamtools import Oracle, read_stream, redacted_pms
from tests.integration.test_cluster import ELECTION_BOUND_S
from tests.integration.test_compose import (
    Images,
    assert_exact,
    ingest_caught_up,
    ingest_health,
    scrape,
    stack_variables,
)

pytestmark = pytest.mark.timeout(420)

# test_compose.py's fixtures (module-scoped: the images are built from the build cache again)
engine = test_compose.engine
images = test_compose.images

FILES = ["docker-compose.yml", "docker-compose.cluster.yml"]
NODES = ("nats", "nats-2", "nats-3")
PORT_VARIABLE = {"nats": "NATS_PORT", "nats-2": "NATS_2_PORT", "nats-3": "NATS_3_PORT"}
RATE = 800  # events/s, a busy bridge
LOAD_SECONDS = 15
KILL_AFTER = 4.0  # seconds into the load
DOWN_FOR = 5.0  # seconds the killed node stays down


def cluster_variables(images: Images) -> dict[str, str]:
    v = stack_variables(images)
    for name in ("NATS_2_PORT", "NATS_2_MONITOR_PORT", "NATS_3_PORT", "NATS_3_MONITOR_PORT"):
        v[name] = str(free_port())
    return v


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_the_cluster_override_merges_into_three_routed_nodes_and_r3_services(tmp_path: Path) -> None:
    """`docker compose config` of both files, with the defaults a user gets (no variables)."""
    c = Compose(f"userstats-cluster-config-{os.getpid()}", FILES, {}, tmp_path / "compose.log")
    config = json.loads(c("config", "--format", "json").stdout)
    services = config["services"]
    sources = set()
    for node in NODES:
        s = services[node]
        assert s["image"] == "nats:2.11-alpine", node
        cmd = s["command"]
        assert "-js" in cmd and option(cmd, "-sd") == "/data", node
        assert option(cmd, "--server_name") == node
        assert option(cmd, "--cluster_name") == "userstats"
        assert option(cmd, "--cluster") == "nats://0.0.0.0:6222"
        routes = set(option(cmd, "--routes").split(","))
        assert routes == {f"nats://{n}:6222" for n in NODES if n != node}, node
        (volume,) = [m for m in s["volumes"] if m["target"] == "/data"]
        sources.add(volume["source"])
        assert s["ports"] and all(p["host_ip"] == "127.0.0.1" for p in s["ports"]), node
        assert {int(p["target"]) for p in s["ports"]} == {4222, 8222}, node
        assert "healthz" in " ".join(s["healthcheck"]["test"]), node
        assert s["restart"] == "unless-stopped", node
    assert sources == {"nats-data", "nats-2-data", "nats-3-data"}, (
        "each node keeps JetStream in its own volume"
    )
    published = sorted(int(p["published"]) for n in NODES for p in services[n]["ports"])
    assert published == [4222, 4223, 4224, 8222, 8223, 8224]
    for name in ("ingest", "query"):
        env = services[name]["environment"]
        assert env["NATS_URL"].split(",") == [f"nats://{n}:4222" for n in NODES], name
        assert env["USERSTATS_REPLICAS"] == "3", name
    assert {n: d["condition"] for n, d in services["ingest"]["depends_on"].items()} == {
        n: "service_healthy" for n in NODES
    }
    # docker-compose.yml alone stays the single server users had
    single = Compose(f"userstats-single-config-{os.getpid()}", FILES[:1], {}, tmp_path / "single.log")
    alone = json.loads(single("config", "--format", "json").stdout)["services"]
    assert "nats-2" not in alone and "--cluster" not in alone["nats"]["command"]
    assert "USERSTATS_REPLICAS" not in alone["ingest"]["environment"]


def container(c: Compose, service: str) -> str:
    return f"{c.project}-{service}-1"


def health_states(c: Compose) -> dict[str, str]:
    out = {}
    for item in c.containers():
        name = item["Names"]
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
        out[name] = (state.get("Health") or {}).get("Status") or state["Status"]
    return out


def node_of(c: Compose, server: str | None) -> str | None:
    """The service a client's `host:port` (a service name or a discovered container IP) is."""
    if server is None:
        return None
    host = server.rpartition(":")[0]
    if host in NODES:
        return host
    for node in NODES:
        ip = docker(
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            container(c, node),
        )
        if host in ip.stdout.decode().split():
            return node
    return host


REPLICA_SERVER = (
    "import json, urllib.request as u; "
    "print(json.load(u.urlopen('http://127.0.0.1:28282/health', timeout=3)).get('nats_server'))"
)


@dataclass
class Round:
    victim: str
    leader: str
    on: dict[str, str | None]
    sent: int
    lost: list[float]  # seconds from the kill at which each lost event was published
    twice: int
    requests: int
    failures: list[float]  # seconds from the kill
    longest_gap: float
    healthy_after: float

    def figures(self) -> str:
        window = (
            f" (published {self.lost[0]:+.2f} to {self.lost[-1]:+.2f} s from the kill)" if self.lost else ""
        )
        return (
            f"compose cluster: killed {self.victim} (stream leader {self.leader}; ingest on "
            f"{self.on['ingest']}, replica on {self.on['query']}) {KILL_AFTER:.0f} s into {self.sent} "
            f"events at {RATE}/s, down {DOWN_FOR:.0f} s: lost {len(self.lost)}{window}, stored twice "
            f"{self.twice}; {self.requests} requests, {len(self.failures)} failed "
            f"({', '.join(f'{t:+.1f} s' for t in self.failures) or 'none'} from the kill), longest gap "
            f"{self.longest_gap:.2f} s; all healthy {self.healthy_after:.1f} s after the restart"
        )


async def kill_under_load(
    c: Compose, v: dict[str, str], pick: str, seed: int, workdir: Path
) -> tuple[Round, Client]:
    """One round: the bridge at RATE on the nodes that stay up, the replica asked in a loop,
    `docker kill` of the node `pick` chooses ("follower" or "leader") KILL_AFTER s in, `start`
    DOWN_FOR s later; then everything healthy and current, and the replica exact for what
    the stream stored. Returns the figures and a client on the surviving nodes."""
    urls = {n: f"nats://127.0.0.1:{v[PORT_VARIABLE[n]]}" for n in NODES}
    ingest_port = int(v["INGEST_PORT"])
    nc = await connect_to(list(urls.values()), "compose-cluster-test")
    try:
        await all_current(nc, timeout=90)
        stream_leader = await leader(nc)
    finally:
        await nc.close()
    on = {
        "ingest": node_of(c, ingest_health(ingest_port)[1].get("nats_server")),
        "query": node_of(c, c.python("query", 1, REPLICA_SERVER).strip()),
    }
    if pick == "leader":
        victim = stream_leader
    else:  # a follower, preferably one a service is on
        candidates = [n for n in NODES if n != stream_leader]
        victim = next((n for n in candidates if n in on.values()), candidates[0])
    survivors = [urls[n] for n in NODES if n != victim]
    nc = await connect_to(survivors, "compose-cluster-test")
    bridge = Bridge(survivors, seed=seed, rate=RATE, workdir=workdir)
    askers = Askers(nc, n=2)
    try:
        bridge.start()
        askers.start()
        load_started = time.monotonic()
        await asyncio.sleep(KILL_AFTER)
        killed = time.monotonic()
        docker("kill", container(c, victim))
        state = json.loads(docker("inspect", "--format", "{{json .State}}", container(c, victim)).stdout)
        assert state["Status"] == "exited" and state["ExitCode"] == 137, state
        await asyncio.sleep(DOWN_FOR)
        c("start", victim)
        restarted = time.monotonic()
        await asyncio.sleep(max(0.0, load_started + LOAD_SECONDS - time.monotonic()))
        await askers.stop()
        await bridge.stop()
    finally:
        if bridge.proc is not None and bridge.proc.poll() is None:
            bridge.proc.kill()

    # The stack is healthy again: every container (the restarted node's full /healthz
    # needs its stream replicas current), every replica of every store current.
    await wait_for(
        lambda: set(health_states(c).values()) == {"healthy"},
        timeout=120,
        interval=1,
        what="every container healthy",
    )
    healthy_after = time.monotonic() - restarted
    await all_current(nc, timeout=60)
    # ingest first: until it has erased every raw PM it appends their journal events
    await ingest_caught_up(nc, ingest_port)
    await all_current(nc, timeout=60)
    monitor = v["NATS_MONITOR_PORT" if victim == "nats" else f"NATS_{victim[-1]}_MONITOR_PORT"]
    async with httpx.AsyncClient(timeout=5) as http:
        jsz = (await http.get(f"http://127.0.0.1:{monitor}/jsz?streams=true")).json()
    held = {s["name"]: s["state"]["last_seq"] for d in jsz["account_details"] for s in d["stream_detail"]}

    items = await read_stream(nc)
    stored = Counter(it.data for it in items)
    last = items[-1].seq
    assert held.get(DEFAULT_STREAM) == last, f"{victim} holds {held}, the stream ends at {last}"
    oracle = Oracle([(it.subject, it.data) for it in items])
    assert_exact(scrape(c, 1, last), oracle, "the replica")
    stats = (await request(nc, {"command": "system.stats", "min_seq": last}, timeout=30))["data"]
    assert stats["total_messages"] == oracle.total_messages
    code, body = ingest_health(ingest_port)
    assert code == 200, body
    r = Round(
        victim=victim,
        leader=stream_leader,
        on=on,
        sent=len(bridge.sent),
        lost=sorted(
            t - killed for t in bridge.lost(set(stored), redacted_pms((i.subject, i.data) for i in items))
        ),
        twice=sum(1 for _, d in bridge.sent if stored[d] > 1),
        requests=len(askers.results),
        failures=[t - killed for t in askers.failures()],
        longest_gap=askers.longest_gap(),
        healthy_after=healthy_after,
    )
    FIGURES.append(r.figures())
    print(r.figures())
    assert r.sent >= RATE * LOAD_SECONDS * 0.8, "the bridge could not keep the rate"
    assert not r.twice, r.figures()
    # The one replica, when it was on the killed node, answers nothing until it has
    # reconnected to another: its reconnect_time_wait (2 s), the handshake, and the
    # request in flight timing out (2 s); 4.3 s seen with a load average of 19 on 2
    # cores. A replica that stays away (or reconnects to the dead node) breaks 8 s.
    # (With --scale query=N the others answer meanwhile.)
    assert r.longest_gap < 8.0, r.figures()
    return r, nc


async def test_cluster_stack_survives_killing_a_nats_container_under_load(
    images: Images, tmp_path: Path
) -> None:
    v = cluster_variables(images)
    c = Compose(f"userstats-cluster-{os.getpid()}", FILES, v, tmp_path / "compose.log")
    try:
        started = time.monotonic()
        c("up", "--detach", "--wait", "--wait-timeout", "180", *NODES, "ingest", "query", timeout=300)
        FIGURES.append(f"compose cluster: up --wait {time.monotonic() - started:.0f} s")
        ports = docker(
            "ps", "--filter", f"label=com.docker.compose.project={c.project}", "--format", "{{.Ports}}"
        )
        bound = re.findall(r"([0-9.:\[\]]+):\d+->", ports.stdout.decode())
        assert bound and set(bound) == {"127.0.0.1"}, f"published on {set(bound)}, not only on 127.0.0.1"
        nc = await connect_to(
            [f"nats://127.0.0.1:{v[PORT_VARIABLE[n]]}" for n in NODES], "compose-cluster-test"
        )
        try:
            for store in STORES:
                info = await nc.jetstream(timeout=5).stream_info(store)
                assert info.config.num_replicas == 3, f"{store} is R{info.config.num_replicas}"
                assert info.cluster is not None and info.cluster.name == "userstats", info.cluster
        finally:
            await nc.close()

        # A follower: the stream keeps its leader, so nothing the bridge publishes is lost.
        follower, nc = await kill_under_load(c, v, "follower", 2121, tmp_path)
        await nc.close()
        assert not follower.lost, f"{len(follower.lost)} events lost although the stream kept its leader"

        # The stream's leader: what the bridge publishes until a new leader is elected is not
        # stored (core NATS; README "Running on a NATS cluster"). The window is the process
        # test's bound on an election (nats-server's timeout is 4 to 9 s, random, plus a
        # vote round on a loaded machine), plus up to 0.5 s for `docker kill` to land:
        # every lost event was published in it, and no more than that many (seen: 3,654 to
        # 6,657 lost, published +0.03 to +8.75 s from the kill).
        window = ELECTION_BOUND_S + 0.5
        led, nc = await kill_under_load(c, v, "leader", 2122, tmp_path)
        await nc.close()
        assert all(-0.5 <= t <= window for t in led.lost), led.figures()
        assert len(led.lost) <= RATE * window, led.figures()

        c("down", "--volumes", timeout=180)
        assert c.leftovers() == {"containers": [], "volumes": [], "networks": []}
    finally:
        c.force_cleanup()
