"""Issue 8, faults: the NATS server restarts during load, replicas die, poison and malformed
requests arrive by the ten thousand, snapshots go bad, the disk fills: nothing is lost."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from nats.aio.client import Client
from userstats.shared import snapshots
from userstats.shared.projection import is_captured
from userstats.shared.subjects import POINTER_KEY
from userstats.sim.generator import Simulator

from testbed.harness import Service, Stack, caught_up, connect, metric, publish_all, request, wait_for
from tests.integration.streamtools import Oracle, dump, dump_file, read_stream, rebuild


@pytest.mark.parametrize(
    ("events", "restarts"), [(100_000, 1), pytest.param(1_000_000, 3, marks=pytest.mark.soak)]
)
async def test_nats_restart_during_load(stack: Stack, events: int, restarts: int) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    first = list(Simulator(seed=51).events(events))
    second = list(Simulator(seed=52, start_us=1_765_000_000_000_000).events(20_000))
    nc = await connect(stack.nats.url)
    try:
        stored = await publish_all(nc, first)
        for i in range(restarts):
            # restart the server (same port, same store) while ingest is still projecting
            assert i > 0 or (ingest.health()[1]["checkpoint_seq"] or 0) < stored
            await nc.close()
            stack.nats.stop()
            await wait_for(
                lambda: not ingest.health()[1]["nats_connected"], timeout=10, what="ingest to see it"
            )
            at_stop = ingest.health()[1]["checkpoint_seq"] or 0
            stack.nats.start()
            nc = await connect(stack.nats.url)

            def partway(at: int = at_stop) -> bool:  # ingest reconnected and projects again
                body = ingest.health()[1]
                return bool(body["nats_connected"]) and ((body["checkpoint_seq"] or 0) > at or at >= stored)

            await wait_for(partway, timeout=30, what="ingest to reconnect and get partway")
        last = await publish_all(nc, second)
        query.wait_healthy()
        await wait_for(lambda: ingest.health()[0] == 200, timeout=30, what="ingest to reconnect")
        await caught_up(nc, ingest)
        await caught_up(nc, query)
        stats = (await request(nc, {"command": "system.stats", "min_seq": last}))["data"]
        assert stats["total_messages"] == Oracle(first + second).total_messages
        ingest.stop()
        assert dump_file(stack.db_path) == dump(rebuild(await read_stream(nc)))
    finally:
        await nc.close()


async def test_kill_9_of_one_replica_under_load_fails_only_its_in_flight_requests(stack: Stack) -> None:
    stack.ingest().wait_healthy()
    doomed, survivor = stack.query(), stack.query()
    nc = await connect(stack.nats.url)
    results: list[tuple[float, bool]] = []
    stop = asyncio.Event()

    async def ask(k: int) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                reply = await request(nc, {"command": "user.stats", "username": f"420GUser{k}"}, timeout=2)
                results.append((loop.time(), bool(reply["success"])))
            except Exception:  # a timeout: the request was in flight on the killed replica
                results.append((loop.time(), False))

    try:
        last = await publish_all(nc, Simulator(seed=53).events(5_000))
        for r in (doomed, survivor):
            r.wait_healthy()
        await caught_up(nc, survivor)
        await request(nc, {"command": "system.stats", "min_seq": last})
        askers = [asyncio.create_task(ask(k)) for k in range(4)]
        await wait_for(lambda: len(results) >= 40, timeout=10, what="both replicas answering")
        killed_at = asyncio.get_running_loop().time()
        doomed.kill9()
        await wait_for(  # the killed replica's requests have timed out, and the survivor serves on
            lambda: len(results) > 200 and sum(1 for t, ok in results if ok and t > killed_at + 2.5) > 50,
            timeout=10,
            what="answers after the kill",
        )
        stop.set()
        await asyncio.gather(*askers)
        failures = [t for t, ok in results if not ok]
        assert len(results) > 200
        assert len(failures) <= 4  # at most the requests in flight on the killed replica
        assert all(t < killed_at + 2.5 for t in failures)  # nothing failed after those timed out
        assert sum(1 for t, ok in results if ok and t > killed_at + 2.5) > 50  # the survivor serves on
        assert survivor.health()[0] == 200
    finally:
        stop.set()
        await nc.close()


# --- 10k poison envelopes -----------------------------------------------------------------


def poison(n: int, seed: int = 71) -> list[tuple[str, bytes]]:
    """n messages the projection must refuse, of every kind a broken bridge could send."""
    rng = random.Random(seed)
    subject = "kryten.events.cytube.c.chatmsg"

    def envelope(**over: object) -> dict[str, object]:
        env: dict[str, object] = {
            "event_name": "chatMsg",
            "payload": {"username": "u", "msg": "hi"},
            "channel": "c",
            "domain": "d",
            "timestamp": "2025-12-05T17:00:00+00:00",
        }
        env.update(over)
        return {k: v for k, v in env.items() if v is not DROP}

    kinds: list[Callable[[], tuple[str, bytes]]] = [
        lambda: (subject, rng.randbytes(rng.randint(1, 300))),  # random bytes
        lambda: (subject, json.dumps(rng.choice([[], [1, 2], "text", 42, None, True])).encode()),
        lambda: (subject, json.dumps(envelope(**{rng.choice(FIELDS): DROP})).encode()),  # a field missing
        lambda: (subject, json.dumps(envelope(channel=rng.choice([5, None, [], {}]))).encode()),
        lambda: (
            subject,
            json.dumps(envelope(timestamp=rng.choice(["yesterday", 17, "2025-13-45"]))).encode(),
        ),
        lambda: (
            subject,
            json.dumps(envelope(payload={"username": "u", "msg": rng.choice([1, [], {}])})).encode(),
        ),
        lambda: (
            "kryten.events.cytube.c.adduser",
            json.dumps(envelope(event_name="addUser", payload={"name": rng.choice([5, [], {}])})).encode(),
        ),
        lambda: (
            "kryten.events.cytube.c.changemedia",
            json.dumps(envelope(event_name="changeMedia", payload={"title": ["x"], "id": "a"})).encode(),
        ),
        lambda: (
            "kryten.events.cytube.c.userlist",
            json.dumps(envelope(event_name="userlist", payload=rng.choice([5, "x", {"a": 1}]))).encode(),
        ),
        lambda: ("userstats.journal.alias", rng.choice([b"{", b'{"type": "nope"}', b'{"type": "alias"}'])),
    ]
    out = [rng.choice(kinds)() for _ in range(n - 20)]
    # huge ones: 20 of about 400 kB (the server's max payload is 1 MB)
    out += [(subject, b"{" + rng.randbytes(200_000).hex().encode()) for _ in range(20)]
    rng.shuffle(out)
    return out


DROP = object()
FIELDS = ["event_name", "payload", "channel", "domain"]


@pytest.mark.parametrize(
    ("n_bad", "n_good"), [(10_000, 30_000), pytest.param(100_000, 300_000, marks=pytest.mark.soak)]
)
async def test_ten_thousand_poison_envelopes_are_dead_lettered_and_valid_totals_stay_exact(
    stack: Stack, n_bad: int, n_good: int
) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    query = stack.query()
    good = list(Simulator(seed=72).events(n_good))
    bad = poison(n_bad)
    rng = random.Random(73)
    at = set(rng.sample(range(n_good + n_bad), n_bad))  # each poison message at a random place
    goods, bads = iter(good), iter(bad)
    mixed = [next(bads) if i in at else next(goods) for i in range(n_good + n_bad)]
    nc = await connect(stack.nats.url)
    try:
        last = await publish_all(nc, mixed)
        assert last >= sum(is_captured(s) for s, _ in mixed)  # + ingest's journal events
        await caught_up(nc, ingest)
        query.wait_healthy()
        await caught_up(nc, query)
        stats = (await request(nc, {"command": "system.stats", "min_seq": last}))["data"]
        oracle = Oracle(good)
        assert stats["total_messages"] == oracle.total_messages
        assert stats["total_pms"] == sum(oracle.pms.values())
        assert metric(ingest.metrics(), "userstats_ingest_dead_letters_total") == n_bad
        await wait_for(
            lambda: metric(query.metrics(), "userstats_query_dead_letters") == n_bad,
            what=f"replica dead letters to be {n_bad}",
        )
        code = ingest.stop()
        assert code == 0
        tables = dump_file(stack.db_path)
        assert len(tables["dead_letters"]) == n_bad
        assert dump(rebuild(await read_stream(nc))) == tables
    finally:
        await nc.close()


# --- 10k malformed requests ---------------------------------------------------------------


def malformed_requests(n: int, seed: int = 81) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    cmd = "kryten.userstats.command"
    user_commands = ["user.stats", "user.profile", "user.messages", "user.activity", "user.kudos"]

    def j(obj: object) -> bytes:
        return json.dumps(obj).encode()

    kinds: list[Callable[[], tuple[str, bytes]]] = [
        lambda: (cmd, b"{" + rng.randbytes(rng.randint(0, 200))),  # never valid JSON
        lambda: (
            cmd,
            b'{"command": "user.stats", "username": "' + rng.choice([b"\xe2\x82", b"\xff"]) + b'"}',
        ),
        lambda: (cmd, j(rng.choice([[], [1], "x", 3, None, 2.5, True]))),
        lambda: (cmd, j({"service": "userstats", "username": "u"})),  # no command
        lambda: (cmd, j({"command": "no." + rng.randbytes(4).hex()})),
        lambda: (cmd, j({"command": rng.choice(user_commands)})),  # username missing
        lambda: (cmd, j({"command": rng.choice(user_commands), "username": rng.choice([5, [], {}, True])})),
        lambda: (
            cmd,
            j({"command": "leaderboard.kudos", "limit": rng.choice(["ten", [], {}, "1e999x"])}),
        ),
        lambda: (
            cmd,
            j({"command": "channel.population", "channel": "c", "hours": rng.choice(["x", [], {}])}),
        ),
        lambda: (cmd, j({"command": "timeseries.messages", "channel": "c", "start_time": "yesterday"})),
        lambda: (cmd, j({"service": rng.choice(["robot", "llm", "x"]), "command": "system.ping"})),
        lambda: (cmd, j({"command": "user.stats", "username": "x" * 70_000})),  # too large
        lambda: ("cytube.query.userstats.cytu.be.no." + rng.randbytes(3).hex(), b"{}"),
        lambda: ("cytube.query.userstats.cytu.be.user.stats", rng.choice([b"{", b"[]", b'{"username": 7}'])),
    ]
    return [rng.choice(kinds)() for _ in range(n)]


@pytest.mark.parametrize("n", [10_000, pytest.param(100_000, marks=pytest.mark.soak)])
async def test_ten_thousand_malformed_requests_each_get_an_error_envelope(stack: Stack, n: int) -> None:
    stack.ingest().wait_healthy()
    replica = stack.query()
    nc = await connect(stack.nats.url)
    try:
        await publish_all(nc, Simulator(seed=82).events(2_000))
        replica.wait_healthy()
        await caught_up(nc, replica)
        assert replica.proc is not None
        pid = replica.proc.pid
        cases = malformed_requests(n)
        replies: list[dict[str, Any]] = []
        queue = list(reversed(cases))

        async def worker() -> None:
            while queue:
                subject, body = queue.pop()
                msg = await nc.request(subject, body, timeout=10)
                replies.append(json.loads(msg.data))

        await asyncio.gather(*(worker() for _ in range(32)))
        assert len(replies) == n
        for reply in replies:
            assert reply["service"] == "userstats" and reply["success"] is False, reply
            assert isinstance(reply["error"], str) and reply["error"], reply
            assert "Traceback" not in reply["error"] and reply["error"] != "Internal error", reply
        assert replica.proc.poll() is None and replica.proc.pid == pid  # never restarted
        code, health = replica.health()
        assert code == 200 and health["status"] == "healthy"
        assert (await request(nc, {"command": "system.ping"}))["data"]["pong"] is True
        errors = sum(
            v
            for k, v in counters(replica.metrics(), "userstats_query_requests_total").items()
            if 'outcome="error"' in k
        )
        assert errors == n
    finally:
        await nc.close()


def counters(text: str, name: str) -> dict[str, float]:
    """Every sample of a metric family: {labels: value}."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) :].rsplit(" ", 1)
            out[labels] = float(value)
    return out


# --- a missing or corrupt snapshot object --------------------------------------------------


async def pointer_now(nc: Client) -> snapshots.SnapshotPointer:
    pointer = await snapshots.read_pointer(nc.jetstream())
    assert pointer is not None
    return pointer


async def test_a_corrupt_or_missing_snapshot_is_survived_and_ingest_publishes_a_good_one(
    stack: Stack,
) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    replica = stack.query()
    nc = await connect(stack.nats.url)
    js = nc.jetstream()
    try:
        await publish_all(nc, Simulator(seed=91).events(5_000))
        replica.wait_healthy()
        await caught_up(nc, ingest)
        last = await caught_up(nc, replica)  # past the PM journal events ingest appended
        expected = figures(await request(nc, {"command": "system.stats"}))

        # 1. With ingest down, the pointer moves to a new generation whose object is corrupt.
        assert ingest.stop() == 0
        good = await pointer_now(nc)
        obs, kv = await snapshots.ensure_buckets(js)
        junk = b"not a duckdb file" * 1000
        await obs.put("snapshot-corrupt", junk)
        fake = msgspec.structs.replace(
            good, object="snapshot-corrupt", generation="f" * 32, size=len(junk), sha256="0" * 64
        )
        await kv.put(POINTER_KEY, msgspec.json.encode(fake))
        health = await wait_for(
            lambda: (h := replica.health()[1]) and h["snapshot_error"] and h, what="the replica to report"
        )
        assert "snapshot-corrupt rejected" in health["snapshot_error"]
        assert "checksum mismatch" in health["snapshot_error"]
        assert health["status"].startswith("degraded") and replica.health()[0] == 200
        await wait_for(
            lambda: metric(replica.metrics(), "userstats_query_snapshot_failures") == 1, what="the metric"
        )
        reply = await request(nc, {"command": "system.stats"})
        assert figures(reply) == expected and reply["as_of_seq"] == last  # still serving

        # 2. Ingest comes back, sees a pointer it did not write for its tables, and publishes.
        ingest = stack.ingest()
        ingest.wait_healthy()
        await wait_for(
            lambda: pointer_is(nc, lambda p: p.generation == good.generation), what="a good pointer"
        )
        await wait_for(lambda: replica.health()[1]["status"] == "healthy", what="the replica to recover")
        assert figures(await request(nc, {"command": "system.stats"})) == expected

        # 3. The pointer's object disappears while ingest runs: it publishes another one.
        current = await pointer_now(nc)
        await obs.delete(current.object)
        await wait_for(lambda: pointer_is(nc, lambda p: p.object != current.object), what="a new snapshot")
        assert await snapshots.check_object(js, await pointer_now(nc)) is None
        assert (metric(ingest.metrics(), "userstats_ingest_snapshot_repairs_total") or 0) >= 1

        # 4. A replica starting while the newest object is missing waits, and starts once
        #    ingest has published again.
        assert ingest.stop() == 0
        current = await pointer_now(nc)
        await obs.delete(current.object)
        newcomer = stack.query()
        status = await wait_for(
            lambda: "missing" in (s := status_of(newcomer)) and s,
            what="the new replica to report the missing object",
        )
        assert status.startswith("unhealthy") and newcomer.health()[0] == 503
        ingest = stack.ingest()
        newcomer.wait_healthy()
        await caught_up(nc, newcomer)
        answers = [await request(nc, {"command": "system.stats"}) for _ in range(4)]  # both replicas
        assert all(figures(a) == expected for a in answers)
    finally:
        await nc.close()


def status_of(svc: Service) -> str:
    """The /health status, or "" while the service is not listening yet."""
    try:
        return str(svc.health()[1].get("status", ""))
    except httpx.HTTPError:
        return ""


def figures(reply: dict[str, Any]) -> dict[str, Any]:
    """system.stats without the per-process request count."""
    assert reply["success"] is True, reply
    return {k: v for k, v in reply["data"].items() if k != "commands_processed"}


async def pointer_is(nc: Client, check: Callable[[snapshots.SnapshotPointer], bool]) -> bool:
    pointer = await snapshots.read_pointer(nc.jetstream())
    return (
        pointer is not None
        and check(pointer)
        and await snapshots.check_object(nc.jetstream(), pointer) is None
    )


# --- disk full under ingest's DuckDB --------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs for ingest's database (mounting needs root; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs for the database (see README, Reliability)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=False)
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here (see README, Reliability)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


async def test_disk_full_stops_projecting_without_loss_and_it_resumes_when_space_returns(
    stack: Stack, small_disk: Path
) -> None:
    disk = small_disk
    filler = disk / "filler"
    db = disk / "userstats.duckdb"
    nc = await connect(stack.nats.url)
    try:
        ingest = stack.ingest(USERSTATS_DB_PATH=str(db))
        ingest.wait_healthy()
        first = list(Simulator(seed=95).events(20_000))
        second = list(Simulator(seed=96, start_us=1_765_000_000_000_000).events(40_000))
        await publish_all(nc, first)
        before = await caught_up(nc, ingest)
        # A snapshot being written at this moment would free its temp file on this disk
        # after the filler is measured: wait until the one at `before` is published and gone.
        await wait_for(
            lambda: (
                metric(ingest.metrics(), "userstats_ingest_snapshot_seq") == before
                and not any((disk / "snapshots").glob("*.duckdb*"))
            ),
            what="the last snapshot to be published",
        )
        free = shutil.disk_usage(disk).free
        with filler.open("wb") as f:  # leave 128 kB: less than one batch needs
            f.write(b"\0" * (free - 128 * 1024))
        last = await publish_all(nc, second)
        health = await wait_for(
            lambda: (h := ingest.health()) and h[1].get("write_error") and h, what="ingest to report"
        )
        assert health[0] == 503 and "No space left on device" in health[1]["write_error"]
        failed = metric(ingest.metrics(), "userstats_ingest_apply_failures_total") or 0
        await wait_for(  # it keeps retrying (after 1 s, then 2 s), and nothing moves
            lambda: (metric(ingest.metrics(), "userstats_ingest_apply_failures_total") or 0) >= failed + 2,
            timeout=10,
            what="two more failed retries",
        )
        body = ingest.health()[1]
        assert ingest.proc is not None and ingest.proc.poll() is None
        assert before <= body["checkpoint_seq"] < last and body["write_error"]
        filler.unlink()  # space returns
        await caught_up(nc, ingest)
        code, body = ingest.health()
        assert code == 200 and body["status"] == "healthy" and body["write_error"] is None
        assert ingest.stop() == 0
        tables = dump_file(db)
        assert dump(rebuild(await read_stream(nc))) == tables
        oracle = Oracle(first + second)
        assert sum(r[-2] for r in tables["counters"] if r[0] == "message") == oracle.total_messages
    finally:
        await nc.close()
        stack.stop_all()
