"""Issue 8, security: both services against a nats-server that requires user/password, a
token, an nkey, or TLS; least-privilege permissions for replicas; the query side never
opens the writer's file and never publishes to the stream's subjects."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nkeys
import pytest
from userstats.shared.subjects import DEFAULT_STREAM
from userstats.sim.generator import Simulator

from testbed.harness import NatsServer, Stack, caught_up, publish_all, request, wait_for
from tests.integration.certs import make_certs
from tests.natsjwt import decentralized

# Least privilege for a replica: read the stream through consumers, read snapshots and
# their pointer, answer requests, forward alias writes, announce itself. No publish to
# kryten.events.> or userstats.journal.>, no stream or consumer administration beyond
# its own ephemeral consumers. (The README shows the same blocks.)
QUERY_PERMISSIONS = """
      publish: {
        allow: ["$JS.API.INFO", "$JS.API.STREAM.INFO.>", "$JS.API.STREAM.NAMES", "$JS.API.CONSUMER.CREATE.>",
                "$JS.API.CONSUMER.DELETE.>", "$JS.API.CONSUMER.INFO.>", "$JS.API.DIRECT.GET.>",
                "$JS.API.STREAM.MSG.GET.>", "$JS.FC.>", "$SRV.>", "_INBOX.>",
                "userstats.ingest.command", "kryten.lifecycle.userstats.>"]
        deny: ["kryten.events.>", "userstats.journal.>"]
      }
      subscribe: {
        allow: ["kryten.userstats.command", "cytube.query.userstats.>", "_INBOX.>", "$SRV.>",
                "kryten.lifecycle.robot.startup", "kryten.service.discovery.poll",
                "kryten.lifecycle.group.restart"]
      }
      allow_responses: true
"""


# Ingest: administers its stream, snapshot bucket and pointer; appends journal events; never
# publishes bridge events.
INGEST_PERMISSIONS = """
      publish: {
        allow: ["$JS.API.>", "$JS.FC.>", "_INBOX.>", "userstats.journal.>", "$O.userstats_snapshots.>",
                "$KV.userstats_pointer.>"]
        deny: ["kryten.events.>"]
      }
      subscribe: { allow: ["_INBOX.>", "userstats.ingest.command", "userstats.ingest.admin"] }
      allow_responses: true
"""


def server_with(tmp_path: Path, conf: str) -> Iterator[NatsServer]:
    path = tmp_path / "nats.conf"
    path.write_text(conf)
    server = NatsServer(tmp_path / "nats-store", extra=["-c", str(path)])
    server.start()
    yield server
    server.stop()


async def smoke(stack: Stack, client_options: dict[str, Any], **service_env: str) -> None:
    """ingest + a replica start with the credentials, project events and answer."""
    ingest = stack.ingest(**service_env)
    ingest.wait_healthy()
    query = stack.query(**service_env)
    nc = await nats.connect(stack.nats.url, **client_options)
    try:
        await publish_all(nc, Simulator(seed=41).events(500))
        query.wait_healthy()
        await caught_up(nc, query)
        stats = (await request(nc, {"command": "system.stats"}))["data"]
        assert stats["total_messages"] > 0
        # the rebuild's own protocol reader authenticates the same way
        out = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "userstats.ingest",
                "rebuild",
                "--output",
                str(stack.tmp / "rebuilt.duckdb"),
            ],
            env=stack.env(**service_env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0 and "fast reader" in out.stdout, out.stdout + out.stderr
    finally:
        await nc.close()


@pytest.fixture
def password_server(tmp_path: Path) -> Iterator[NatsServer]:
    yield from server_with(tmp_path, 'authorization { user: "stats", password: "s3cret" }\n')


async def test_user_and_password(tmp_path: Path, password_server: NatsServer) -> None:
    stack = Stack(tmp_path, password_server)
    try:
        await smoke(stack, {"user": "stats", "password": "s3cret"}, NATS_USER="stats", NATS_PASSWORD="s3cret")
        refused = stack.ingest(
            NATS_USER="stats",
            NATS_PASSWORD="wrong",
            NATS_STARTUP_WAIT="2",
            USERSTATS_DB_PATH=str(tmp_path / "x.duckdb"),
        )
        assert refused.proc is not None and refused.proc.wait(30) == 1
        text = refused.log.read_text()
        assert "cannot connect to NATS" in text and "s3cret" not in text and "wrong" not in text
    finally:
        stack.stop_all()


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[NatsServer]:
    yield from server_with(tmp_path, 'authorization { token: "t0k3n-for-userstats" }\n')


async def test_token(tmp_path: Path, token_server: NatsServer) -> None:
    stack = Stack(tmp_path, token_server)
    try:
        await smoke(stack, {"token": "t0k3n-for-userstats"}, NATS_TOKEN="t0k3n-for-userstats")
    finally:
        stack.stop_all()


async def test_nkey_seed_file(tmp_path: Path) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    for server in server_with(tmp_path, f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}\n'):
        stack = Stack(tmp_path, server)
        try:
            await smoke(stack, {"nkeys_seed": str(seed_file)}, NATS_NKEY_SEED=str(seed_file))
        finally:
            stack.stop_all()


async def test_tls(tmp_path: Path) -> None:
    make_certs(tmp_path)
    conf = f'tls {{ cert_file: "{tmp_path}/server.pem", key_file: "{tmp_path}/server.key" }}\n'
    ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    for server in server_with(tmp_path, conf):
        stack = Stack(tmp_path, server)
        try:
            await smoke(stack, {"tls": ctx}, NATS_TLS_CA=str(tmp_path / "ca.pem"))
            # without the CA the server is not trusted
            no_ca = stack.ingest(NATS_STARTUP_WAIT="2", USERSTATS_DB_PATH=str(tmp_path / "x.duckdb"))
            assert no_ca.proc is not None and no_ca.proc.wait(30) == 1
        finally:
            stack.stop_all()


@pytest.fixture
def permission_server(tmp_path: Path) -> Iterator[NatsServer]:
    conf = f"""
authorization {{
  users: [
    {{ user: ingest, password: ingest-pw, permissions: {{ {INGEST_PERMISSIONS} }} }}
    {{ user: query, password: query-pw, permissions: {{ {QUERY_PERMISSIONS} }} }}
    {{ user: tester, password: tester-pw }}
  ]
}}
"""
    yield from server_with(tmp_path, conf)


async def test_replicas_work_with_least_privilege_and_cannot_write_the_stream(
    tmp_path: Path, permission_server: NatsServer
) -> None:
    stack = Stack(tmp_path, permission_server)
    tester = {"user": "tester", "password": "tester-pw"}
    try:
        ingest = stack.ingest(NATS_USER="ingest", NATS_PASSWORD="ingest-pw")
        ingest.wait_healthy()
        query = stack.query(NATS_USER="query", NATS_PASSWORD="query-pw")
        nc = await nats.connect(permission_server.url, **tester)
        try:
            await publish_all(nc, Simulator(seed=42).events(2_000))
            query.wait_healthy()
            last = await caught_up(nc, query)
            added = await request(nc, {"command": "alias.add", "username": "420GUser1", "alias": "one"})
            assert added["success"] and added["data"]["added"]  # writes go through ingest
            found = await request(
                nc, {"command": "alias.find", "alias": "one", "min_seq": added["as_of_seq"]}
            )
            assert found["data"]["username"] == "420GUser1"
            stats = (await request(nc, {"command": "system.stats"}))["data"]
            assert stats["total_messages"] > 0
            forgot = await request(nc, {"command": "user.forget", "username": "420GUser2"}, timeout=15)
            assert forgot["success"] and forgot["data"]["known"]  # ingest deletes from the stream

            async def scanned() -> bool:
                kv = await nc.jetstream().key_value("userstats_pointer")
                return not [k for k in await kv.keys() if k.startswith("forget-scan.")]

            await wait_for(scanned, what="the forget scan to finish")
            for svc in (ingest, query):  # neither tried anything its permissions forbid
                assert "Permissions Violation" not in svc.log.read_text()

            # the replica's credentials cannot add to the log
            errors: list[str] = []

            async def on_error(exc: Exception) -> None:
                errors.append(str(exc))

            as_query = await nats.connect(
                permission_server.url, user="query", password="query-pw", error_cb=on_error
            )
            await as_query.publish(
                "userstats.journal.tick", b'{"type": "tick", "timestamp": "2030-01-01T00:00:00Z"}'
            )
            await as_query.publish("kryten.events.cytube.x.chatmsg", b"{}")
            # nor delete from it (user.forget's deletions are ingest's)
            await as_query.publish("$JS.API.STREAM.MSG.DELETE.USERSTATS", b'{"seq": 1}', reply="_INBOX.x")
            await as_query.flush()
            refusals = [
                f'"$G/user:query" - Publish Violation - Subject "{subject}"'
                for subject in (
                    "userstats.journal.tick",
                    "kryten.events.cytube.x.chatmsg",
                    "$JS.API.STREAM.MSG.DELETE.USERSTATS",  # nor delete from it
                )
            ]
            await wait_for(
                lambda: all(r in permission_server.log.read_text() for r in refusals),
                timeout=5,
                what="the server to log the three refusals",
            )
            await as_query.close()
            server_log = permission_server.log.read_text()
            for refusal in refusals:
                assert refusal in server_log
            assert (
                (await nc.jetstream().stream_info(DEFAULT_STREAM)).state.last_seq
                == forgot["as_of_seq"]
                > last
            )

            # and the replica never opened the writer's DuckDB file (same USERSTATS_DB_PATH in its env)
            assert query.proc is not None
            fds = Path(f"/proc/{query.proc.pid}/fd")
            opened = {str(fd.readlink()) for fd in fds.iterdir() if fd.is_symlink()}
            assert str(stack.db_path) not in opened and not any(o.endswith(".duckdb.wal") for o in opened)
            assert query.env["USERSTATS_DB_PATH"] == str(stack.db_path)
        finally:
            await nc.close()
    finally:
        stack.stop_all()


async def test_creds_file_with_operator_and_account_jwts(tmp_path: Path) -> None:
    """Decentralized auth as `nsc` sets it up: operator, JetStream account, user .creds."""
    auth = decentralized(tmp_path)
    for server in server_with(tmp_path, auth.server_conf):
        stack = Stack(tmp_path, server)
        try:
            await smoke(stack, {"user_credentials": str(auth.creds)}, NATS_CREDS=str(auth.creds))
            refused = stack.ingest(NATS_STARTUP_WAIT="2", USERSTATS_DB_PATH=str(tmp_path / "x.duckdb"))
            assert refused.proc is not None and refused.proc.wait(30) == 1  # no creds: not let in
            assert "cannot connect to NATS" in refused.log.read_text()
        finally:
            stack.stop_all()
