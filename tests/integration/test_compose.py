"""Issue 14: the project's own Dockerfile and docker-compose.yml, built and run on a real engine.

Nothing is mocked: a real Docker engine (started here when none runs), images built from the
real Dockerfile, NATS, ingest and three query replicas in containers, a real Prometheus. Only
the compose variables differ from what a user gets: stand-in base images (built from Debian
packages, see tests/dockerstack.py), free host ports on 127.0.0.1, a throwaway project name.

The host talks to the stack only through the ports compose publishes on 127.0.0.1; a single
replica is read with `docker compose exec --index N` on its own loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from userstats.sim.generator import Simulator

from testbed.harness import publish_all, request, stream_last_seq, wait_for
from tests.dockerstack import (
    ROOT,
    Compose,
    Engine,
    EngineUnavailable,
    docker,
    free_port,
    standin_images,
)
from tests.integration.streamtools import Oracle

pytestmark = pytest.mark.timeout(420)

# A line appended to the pip CA handed to the build as a secret: PEM readers skip text
# outside certificate blocks, and no layer, history entry or config may ever contain it.
# Computed, so that this file (which never enters the build context anyway) does not hold it.
SECRET_MARKER = "# " + hashlib.sha256(b"userstats build secret marker").hexdigest()

# Polls a replica's /metrics from inside its container until the totals were read at a
# sequence >= argv[1] (userstats_query_as_of_seq), then prints them.
SCRAPE = r"""
import re, sys, time, urllib.request as u
want, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
last = None
while True:
    try:
        text = u.urlopen("http://127.0.0.1:28282/metrics", timeout=3).read().decode()
        m = re.search(r"^userstats_query_as_of_seq (\S+)$", text, re.M)
        last = m and m.group(1)
        if m and float(m.group(1)) >= want:
            print(text)
            break
    except OSError as exc:
        last = exc
    if time.monotonic() > deadline:
        sys.exit(f"as_of_seq never reached {want} (last: {last})")
    time.sleep(0.2)
"""

REPLICAS = 3


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    try:
        e = Engine(tmp_path_factory.mktemp("engine"))
        e.ensure()
    except EngineUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the compose tests, but: {exc}")
        pytest.skip(f"no Docker engine can be started here: {exc}")
    yield e
    e.stop()  # only if this test started it


def host_pip_ca() -> Path | None:
    """The CA bundle the host's pip trusts (PIP_CERT or pip's `cert` setting), if any."""
    if os.environ.get("PIP_CERT"):
        return Path(os.environ["PIP_CERT"])
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.cert"],
        capture_output=True,
        text=True,
        check=False,
    )
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


@dataclass
class Images:
    standins: dict[str, str]
    userstats: str
    build_output: str

    def variables(self) -> dict[str, str]:
        return {
            "PYTHON_IMAGE": self.standins["python"],
            "NATS_IMAGE": self.standins["nats"],
            "PROMETHEUS_IMAGE": self.standins["prometheus"],
            "USERSTATS_IMAGE": self.userstats,
        }


def stack_variables(images: Images) -> dict[str, str]:
    variables = images.variables()
    for name in ("NATS_PORT", "NATS_MONITOR_PORT", "INGEST_PORT", "PROMETHEUS_PORT", "GRAFANA_PORT"):
        variables[name] = str(free_port())
    return variables


@pytest.fixture(scope="module")
def images(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Images:
    """The stand-in base images (cached by content), then `docker compose build` with a pip CA
    secret: the host pip's CA bundle when it has one, plus the marker line, always."""
    work = tmp_path_factory.mktemp("images")
    standins = standin_images(work, work / "standins.log")
    userstats = "userstats-test:local"  # one tag, replaced by each run
    ca = host_pip_ca()
    secret = work / "pip-ca.pem"
    secret.write_text((ca.read_text() if ca is not None and ca.is_file() else "") + f"\n{SECRET_MARKER}\n")
    variables = {"PYTHON_IMAGE": standins["python"], "USERSTATS_IMAGE": userstats, "PIP_CA_FILE": str(secret)}
    build = Compose(f"userstats-build-{os.getpid()}", ["docker-compose.yml"], variables, work / "compose.log")
    before = image_id(userstats)
    out = build("build", timeout=900)
    if before and before != image_id(userstats):  # the previous run's image, now untagged
        subprocess.run(["docker", "rmi", before], capture_output=True, check=False)
    return Images(standins, userstats, out.stdout + out.stderr)


def image_id(tag: str) -> str | None:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() if out.returncode == 0 else None


# --- helpers -----------------------------------------------------------------------------


def samples(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of one metric family in Prometheus text format: sorted labels -> value."""
    out = {}
    for m in re.finditer(rf"^{re.escape(family)}(?:\{{(.*?)\}})? (\S+)$", text, re.M):
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or "")))
        out[labels] = float(m.group(2))
    return out


def value(text: str, family: str, **labels: str) -> float | None:
    return samples(text, family).get(tuple(sorted(labels.items())))


def scrape(c: Compose, index: int, min_seq: int, timeout: float = 90) -> str:
    return c.python("query", index, SCRAPE, str(min_seq), str(timeout), timeout=timeout + 30)


def replica_texts(c: Compose, min_seq: int) -> list[str]:
    return [scrape(c, i, min_seq) for i in range(1, REPLICAS + 1)]


def top10(counts: dict[str, int]) -> list[int]:
    return sorted(counts.values(), reverse=True)[:10]


def assert_exact(text: str, oracle: Oracle, where: str) -> None:
    """A replica's metrics equal what was counted straight from the published envelopes."""
    assert value(text, "userstats_total_messages") == oracle.total_messages, where
    assert value(text, "userstats_total_pms") == sum(oracle.pms.values()), where
    assert value(text, "userstats_total_users_tracked") == len(oracle.users), where
    per_channel: Counter[tuple[str, str]] = Counter()
    per_user: dict[str, Counter[str]] = {}
    for (user, channel, domain), n in oracle.messages.items():
        per_channel[(domain, channel)] += n
        if user != "[server]":
            per_user.setdefault(domain, Counter())[user] += n
    got = {
        dict(k)["domain"] + "/" + dict(k)["channel"]: v
        for k, v in samples(text, "userstats_channel_messages").items()
    }
    assert got == {f"{d}/{c}": float(n) for (d, c), n in per_channel.items()}, where
    tops = samples(text, "userstats_top_user_messages")
    assert len({dict(k)["domain"] for k in tops}) >= 2, f"{where}: the corpus spans two domains"
    for domain, counts in per_user.items():
        got_top = sorted((v for k, v in tops.items() if dict(k)["domain"] == domain), reverse=True)
        assert got_top == [float(n) for n in top10(counts)], f"{where}: top users of {domain}"


def ingest_health(port: int) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    return r.status_code, r.json()


async def ingest_caught_up(nc: Client, port: int, timeout: float = 120) -> int:
    """Ingest's checkpoint once it has reached the stream's last seq. Ingest appends the PM
    journal events of a batch before it announces the batch's checkpoint, so then every one
    of them is stored and projected."""

    async def at() -> int:
        try:  # first: the events appended before the checkpoint was announced are stored
            code, body = ingest_health(port)
        except (httpx.HTTPError, ValueError):
            return 0
        seq = body.get("checkpoint_seq") or 0
        return int(seq) if code == 200 and seq >= await stream_last_seq(nc) else 0

    return int(await wait_for(at, timeout=timeout, interval=0.1, what="ingest to reach the stream's end"))


# Commands whose answers only published events change. (Ingest appends a `tick` to the
# stream every 30 s, which moves as_of_seq and the population figures.)
READ_COMMANDS: list[dict[str, Any]] = [
    {"command": "leaderboard.messages", "limit": 10},
    {"command": "leaderboard.kudos", "limit": 10},
    {"command": "leaderboard.emotes", "limit": 10},
    {"command": "channel.top_users", "channel": "420Grindhouse"},
    {"command": "channel.top_users", "channel": "AnimeClub", "domain": "cy.tube"},
    {"command": "user.messages", "username": "420GUser7", "domain": "cytu.be"},
    {"command": "user.kudos", "username": "AnimUser3", "domain": "cy.tube"},
]


async def answers(nc: Client) -> list[Any]:
    """The `data` of those commands' replies, as one replica (chosen by the queue group) gives them."""
    out = []
    for body in READ_COMMANDS:
        msg = await nc.request("kryten.userstats.command", json.dumps(body).encode(), timeout=10)
        reply = json.loads(msg.data)
        assert reply["success"] is True, msg.data
        out.append(reply["data"])
    return out


async def one_reply_each(nc: Client, n: int) -> list[bytes]:
    """n requests with their own inboxes; every one must get exactly one reply."""
    replies: dict[str, list[bytes]] = {}

    async def collect(msg: Any) -> None:
        replies.setdefault(msg.subject, []).append(msg.data)

    sub = await nc.subscribe("_INBOX.compose.>", cb=collect)
    body = json.dumps({"command": "leaderboard.messages", "limit": 5}).encode()
    for i in range(n):
        await nc.publish("kryten.userstats.command", body, reply=f"_INBOX.compose.{i}")
    await nc.flush()
    await wait_for(lambda: len(replies) == n, timeout=20, what=f"{n} replies")
    await asyncio.sleep(0.5)  # time for a duplicate reply to arrive
    await sub.unsubscribe()
    assert all(len(v) == 1 for v in replies.values()), "a request got more than one reply"
    return [v[0] for v in replies.values()]


def requests_served(text: str) -> float:
    return value(text, "userstats_query_requests_total", command="leaderboard.messages", outcome="ok") or 0.0


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "userstats.json").read_text())
    return [(f"panel {p['id']} ({p['title']})", t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def prometheus(port: int, path: str, **params: str) -> Any:
    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/{path}", params=params, timeout=10)
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


async def targets_all_up(port: int, timeout: float = 60) -> dict[str, list[str]]:
    """Active targets by job once every one is UP (replicas by DNS, ingest); else fail naming
    the targets that are not, with Prometheus' error for each."""
    deadline = time.monotonic() + timeout
    while True:
        targets = prometheus(port, "targets", state="active")["activeTargets"]
        down = [f"{t['scrapeUrl']}: {t['health']} {t['lastError']}" for t in targets if t["health"] != "up"]
        if targets and not down:
            jobs: dict[str, list[str]] = {}
            for t in targets:
                jobs.setdefault(t["labels"]["job"], []).append(t["labels"]["instance"])
            return jobs
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus targets not UP after {timeout:.0f} s: {down or 'none found'}")
        await asyncio.sleep(1)


def series(port: int, expr: str) -> list[dict[str, Any]] | None:
    """The query's result when it has at least one series and its values are numbers.

    A quantile of a command that had no requests in the window is NaN in PromQL (Grafana
    leaves a gap), so a histogram_quantile() needs one number among its series; any other
    expression needs every value to be a number.
    """
    result: list[dict[str, Any]] = prometheus(port, "query", query=expr)["result"]
    finite = [math.isfinite(float(s["value"][1])) for s in result]
    if not result or not (any(finite) if expr.startswith("histogram_quantile(") else all(finite)):
        return None
    return result


# --- the tests ---------------------------------------------------------------------------


def test_the_image_builds_from_a_small_context_without_baking_in_the_pip_ca(images: Images) -> None:
    sizes = [
        float(n) * {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
        for n, unit in re.findall(r"transferring context: ([0-9.]+)([kKMG]?B)", images.build_output)
    ]
    assert sizes, images.build_output[-2000:]
    assert max(sizes) < 3e6, f"build context of {max(sizes):.0f} bytes: .dockerignore lets too much in"
    history = docker("history", "--no-trunc", images.userstats).stdout.decode()
    config = docker("image", "inspect", images.userstats).stdout.decode()
    for text in (history, config):
        assert SECRET_MARKER[2:] not in text
        assert "PIP_CERT" not in text
    # Every byte of every layer: the secret's content is nowhere in the image.
    cli = ["docker", "save", images.userstats]
    with subprocess.Popen(cli, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        tail, total = b"", 0
        needle = SECRET_MARKER[2:].encode()
        while chunk := proc.stdout.read(1 << 20):
            assert needle not in tail + chunk, "the pip CA secret was written into a layer"
            tail, total = chunk[-len(needle) :], total + len(chunk)
    assert proc.returncode == 0 and total > 10_000_000
    user = json.loads(config)[0]["Config"]["User"]
    assert user == "userstats", "the services must not run as root"


async def test_compose_stack_scales_survives_kills_restarts_and_down_up(
    images: Images, tmp_path: Path
) -> None:
    v = stack_variables(images)
    c = Compose(f"userstats-test-{os.getpid()}", ["docker-compose.yml"], v, tmp_path / "compose.log")
    prom, ingest_port = int(v["PROMETHEUS_PORT"]), int(v["INGEST_PORT"])
    up = ("up", "--detach", "--wait", "--wait-timeout", "180", "--scale", f"query={REPLICAS}")
    nc: Client | None = None
    try:
        # Grafana's image cannot run here: every other service of the monitoring profile does.
        c("--profile", "monitoring", *up, "nats", "ingest", "query", "prometheus", timeout=300)
        published = docker(
            "ps", "--filter", f"label=com.docker.compose.project={c.project}", "--format", "{{.Ports}}"
        )
        bound = re.findall(r"([0-9.:\[\]]+):\d+->", published.stdout.decode())
        assert bound and set(bound) == {"127.0.0.1"}, f"published on {set(bound)}, not only on 127.0.0.1"

        nc = await nats.connect(f"nats://127.0.0.1:{v['NATS_PORT']}", name="userstats-compose-test")
        sim = Simulator(seed=21)
        events = list(sim.events(20_000))
        await publish_all(nc, events)
        last = await ingest_caught_up(nc, ingest_port)  # with the PM journal events
        oracle = Oracle(events)

        # Every replica counts exactly; requests are shared by all three, one answer each.
        texts = replica_texts(c, last)
        for i, text in enumerate(texts, 1):
            assert_exact(text, oracle, f"replica {i}")
        stats = (await request(nc, {"command": "system.stats", "min_seq": last}))["data"]
        assert stats["total_messages"] == oracle.total_messages
        before = [requests_served(t) for t in texts]
        bodies = await one_reply_each(nc, 600)
        assert len(set(bodies)) == 1, "replicas gave different answers"
        after = [requests_served(t) for t in replica_texts(c, last)]
        served = [a - b for a, b in zip(after, before, strict=True)]
        assert sum(served) == 600 and min(served) > 0, f"requests per replica: {served}"

        # `docker compose kill ingest` in the middle of a load, then `start`.
        load, tail = list(sim.events(120_000)), list(sim.events(10_000))
        publishing = asyncio.create_task(publish_all(nc, load))

        def partway() -> int:
            try:
                seq = int(ingest_health(ingest_port)[1].get("checkpoint_seq") or 0)
            except (httpx.HTTPError, ValueError):
                return 0
            return seq if seq > last + 10_000 else 0

        reported = await wait_for(partway, timeout=60, interval=0.02, what="ingest partway through the load")
        c("kill", "ingest")
        loaded = await publishing  # the stream keeps storing while ingest is down
        assert reported < loaded, "ingest finished the load before it was killed: the kill proved nothing"
        state = json.loads(docker("inspect", "--format", "{{json .State}}", f"{c.project}-ingest-1").stdout)
        assert state["Status"] == "exited" and state["ExitCode"] == 137, state
        await publish_all(nc, tail)
        c("start", "ingest")
        resumed = await wait_for(
            lambda: (
                int(ingest_health(ingest_port)[1].get("checkpoint_seq") or 0) if _answers(ingest_port) else 0
            ),
            timeout=90,
            what="ingest to answer again",
        )
        assert resumed >= reported, "a checkpoint ingest had reported was lost in the kill"
        last = await ingest_caught_up(nc, ingest_port)
        oracle = Oracle(events + load + tail)
        texts = replica_texts(c, last)
        for i, text in enumerate(texts, 1):
            assert_exact(text, oracle, f"replica {i} after the kill")
        assert value(texts[0], "userstats_query_dead_letters") == 0

        # Monitoring: a real Prometheus finds the three replicas by DNS and ingest, all UP, and
        # every Grafana panel's PromQL returns a series of numbers over this stack's data.
        requester = asyncio.create_task(_keep_asking(nc))  # panels of rates need traffic
        try:
            jobs = await targets_all_up(prom)
            assert sorted(jobs) == ["userstats-ingest", "userstats-query"], jobs
            assert len(jobs["userstats-query"]) == REPLICAS and len(jobs["userstats-ingest"]) == 1, jobs
            await wait_for(
                lambda: (
                    (s := series(prom, "max(userstats_total_messages)"))
                    and float(s[0]["value"][1]) == oracle.total_messages
                ),
                timeout=60,
                interval=1,
                what="Prometheus to scrape the exact total",
            )
            per_user: Counter[tuple[str, str]] = Counter()
            for (user, _channel, domain), n in oracle.messages.items():
                if user != "[server]":
                    per_user[(domain, user)] += n
            for panel, expr in dashboard_queries():
                result = await wait_for(
                    lambda e=expr: series(prom, e), timeout=60, interval=1, what=f"{panel}: {expr}"
                )
                if "userstats_top_" in expr:  # a top 10 over all domains, not one per domain
                    assert len(result) <= 10, f"{panel}: {len(result)} series"
                if "userstats_top_user_messages" in expr:  # the 10 most active users, exactly
                    got = sorted(float(s["value"][1]) for s in result)
                    assert got == sorted(float(n) for _, n in per_user.most_common(10)), panel
            freshness = [e for _, e in dashboard_queries() if "userstats_query_as_of_seq" in e]
            assert freshness, "panel 11 shows how far each replica is behind ingest"
            for expr in freshness:  # one series per replica
                assert len(series(prom, expr) or []) == REPLICAS, expr
        finally:
            requester.cancel()

        # `docker compose restart query`: the replicas reload and answer the same.
        before_answers = await answers(nc)
        restarted = time.monotonic()
        c("restart", "query")
        texts = replica_texts(c, last)
        for i, text in enumerate(texts, 1):
            assert_exact(text, oracle, f"replica {i} after restart")
            uptime = value(text, "userstats_uptime_seconds")
            assert uptime is not None and uptime < time.monotonic() - restarted + 1, (
                f"replica {i} did not restart"
            )
        for _ in range(REPLICAS * 3):  # spread over the replicas by the queue group
            assert await answers(nc) == before_answers

        # `docker compose down` keeps the volumes: `up` again finds the data.
        await nc.close()
        nc = None
        c("--profile", "monitoring", "down", timeout=180)
        assert not c.leftovers()["containers"]
        assert len(c.leftovers()["volumes"]) >= 2, "down without -v must keep the volumes"
        c(*up, "nats", "ingest", "query", timeout=300)
        nc = await nats.connect(f"nats://127.0.0.1:{v['NATS_PORT']}", name="userstats-compose-test")
        assert await stream_last_seq(nc) >= last  # (plus any tick ingest appended)
        await ingest_caught_up(nc, ingest_port)
        for i, text in enumerate(replica_texts(c, last), 1):
            assert_exact(text, oracle, f"replica {i} after down and up")
        assert await answers(nc) == before_answers
        await nc.close()
        nc = None

        # `docker compose down -v` leaves nothing of the project behind.
        c("--profile", "monitoring", "down", "--volumes", timeout=180)
        assert c.leftovers() == {"containers": [], "volumes": [], "networks": []}
    finally:
        if nc is not None:
            await nc.close()
        c.force_cleanup()


def _answers(port: int) -> bool:
    try:
        return ingest_health(port)[0] == 200
    except (httpx.HTTPError, ValueError):
        return False


async def _keep_asking(nc: Client) -> None:
    while True:
        await nc.request("kryten.userstats.command", b'{"command": "system.ping"}', timeout=5)
        await asyncio.sleep(0.5)


async def test_authenticated_nats_and_credentials_reach_ingest_and_query(
    images: Images, tmp_path: Path
) -> None:
    """docker-compose.auth.yml: NATS refuses anonymous clients; the services log in with
    NATS_USER/NATS_PASSWORD. A token and a .creds file (a compose secret) reach both."""
    v = stack_variables(images)
    secret = hashlib.sha256(os.urandom(16)).hexdigest()
    v.update(
        NATS_USER="userstats",
        NATS_PASSWORD="p" + secret[:30],
        NATS_BRIDGE_USER="bridge",
        NATS_BRIDGE_PASSWORD="b" + secret[30:60],
    )
    files = ["docker-compose.yml", "docker-compose.auth.yml"]
    c = Compose(f"userstats-auth-{os.getpid()}", files, v, tmp_path / "compose.log")
    url = f"nats://127.0.0.1:{v['NATS_PORT']}"
    try:
        c("up", "--detach", "--wait", "--wait-timeout", "180", "nats", "ingest", "query", timeout=300)

        # Without credentials, or with a wrong password, a replica is not let in (both at
        # once: each waits out the client's 10 s connect timeout).
        def refused(*who: str) -> subprocess.CompletedProcess[str]:
            return c(
                "run",
                "--rm",
                "--no-deps",
                "-e",
                "NATS_STARTUP_WAIT=2",
                *who,
                "query",
                timeout=120,
                check=False,
            )

        with ThreadPoolExecutor(2) as pool:
            runs = list(
                pool.map(
                    lambda who: refused(*who),
                    (["-e", "NATS_USER=", "-e", "NATS_PASSWORD="], ["-e", "NATS_PASSWORD=wrong"]),
                )
            )
        for out in runs:
            text = out.stdout + out.stderr
            assert out.returncode == 1, text
            # the fail-fast connect names the refusal and what to check, in one line
            assert "cannot connect to NATS at nats://nats:4222: authorization violation" in text, text
            assert v["NATS_PASSWORD"] not in text
        nc = await nats.connect(url, user="bridge", password=v["NATS_BRIDGE_PASSWORD"], name="bridge")
        try:
            events = list(Simulator(seed=22).events(5_000))
            last = await publish_all(nc, events)
            stats = (await request(nc, {"command": "system.stats", "min_seq": last}, timeout=30))["data"]
            assert stats["total_messages"] == Oracle(events).total_messages
        finally:
            await nc.close()

        # A token and a .creds file: what each service's settings receive (no NATS needed).
        creds = tmp_path / "userstats.creds"
        creds.write_text(
            "-----BEGIN NATS USER JWT-----\neyJ0ZXN0IjoidXNlcnN0YXRzIn0\n------END NATS USER JWT------\n"
        )
        try:
            os.chown(creds, 10001, 10001)  # the containers' user, as the README says
            creds.chmod(0o400)
        except PermissionError:
            creds.chmod(0o444)
        with_creds = Compose(
            c.project,
            files,
            {**v, "NATS_TOKEN": "t" + secret[:20], "NATS_CREDS_FILE": str(creds)},
            tmp_path / "run.log",
        )
        script = "userstats-{0} --validate-config && echo ==== && cat /run/secrets/nats_creds"
        for service in ("ingest", "query"):
            out = with_creds(
                "run", "--rm", "--no-deps", service, "sh", "-c", script.format(service), timeout=120
            )
            shown, _, mounted = out.stdout.partition("====\n")
            nats_settings = json.loads(shown)["nats"]
            assert nats_settings["user"] == "userstats", service
            assert nats_settings["password"] == "***" and nats_settings["token"] == "***", service
            assert nats_settings["creds"] == "/run/secrets/nats_creds", service
            assert mounted == creds.read_text(), service
            assert v["NATS_PASSWORD"] not in out.stdout + out.stderr, "a secret was printed"
        c("down", "--volumes", timeout=180)
        assert c.leftovers() == {"containers": [], "volumes": [], "networks": []}
    finally:
        c.force_cleanup()
