"""The fast rebuild reader's NATS connection (ingest/rawstream.py reads through it): one plain
TCP (or TLS) connection, greeted and authenticated by hand.

It tries the servers of the list in turn. Authentication is natsconn's: user/password (also
in the URL), token, nkey seed file, .creds file, TLS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import nkeys  # type: ignore[import-untyped]
from userstats.shared import natsconn
from userstats.shared.settings import NatsSettings

READ_SIZE = 1 << 20


class RawConnectError(Exception):
    """The fast reader could not connect or authenticate (the caller may fall back)."""


def _creds(path: str) -> tuple[str, bytes]:
    """(user JWT, seed) from a .creds file."""
    lines = Path(path).read_text().splitlines()
    jwt = seed = None
    for i, line in enumerate(lines[:-1]):
        if "BEGIN NATS USER JWT" in line:
            jwt = lines[i + 1].strip()
        elif "BEGIN USER NKEY SEED" in line:
            seed = lines[i + 1].strip().encode()
    if not jwt or not seed:
        raise RawConnectError(f"{path} is not a NATS .creds file")
    return jwt, seed


def connect_fields(
    s: NatsSettings, info: dict[str, Any], url_user: str | None, url_pass: str | None
) -> dict[str, Any]:
    """The CONNECT options with the credentials the settings (or the URL) give.

    Which credentials apply is natsconn's choice (`connect_options`, what nats-py is given);
    this only writes them as protocol fields, signing the server's nonce with an nkey."""
    opts = natsconn.connect_options(s, "userstats-rebuild-reader")
    fields: dict[str, Any] = {
        "verbose": False,
        "pedantic": False,
        "lang": "python3",
        "version": "userstats-rawstream",
        "protocol": 1,
        "headers": True,
        "no_responders": True,
        "name": opts["name"],
    }
    user, password = (opts["user"], opts["password"]) if "user" in opts else (url_user, url_pass)
    if user:
        fields["user"], fields["pass"] = user, password or ""
    if "token" in opts:
        fields["auth_token"] = opts["token"]
    seed: bytes | None = None
    if "user_credentials" in opts:
        fields["jwt"], seed = _creds(opts["user_credentials"])
    elif "nkeys_seed" in opts:
        seed = Path(opts["nkeys_seed"]).read_bytes().strip()
    if seed is not None:
        kp = nkeys.from_seed(bytearray(seed))
        nonce = str(info.get("nonce", ""))
        fields["sig"] = base64.b64encode(kp.sign(nonce.encode())).decode()
        if "user_credentials" not in opts:
            fields["nkey"] = kp.public_key.decode()
    return fields


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, s: NatsSettings, timeout: float = 5.0, first: int = 0) -> RawConnection:
        """Connect to the first server that accepts, trying them from index `first` on."""
        errors = []
        k = first % len(s.servers) if s.servers else 0
        for server in s.servers[k:] + s.servers[:k]:
            try:
                return await asyncio.wait_for(cls._open(s, server), timeout)
            except (OSError, TimeoutError, RawConnectError, ssl.SSLError, ValueError) as exc:
                errors.append(f"{urlparse(server).hostname}: {exc}")
        raise RawConnectError("; ".join(errors) or "no servers configured")

    @classmethod
    async def _open(cls, s: NatsSettings, server: str) -> RawConnection:
        url = urlparse(server if "://" in server else f"nats://{server}")
        if url.scheme not in ("nats", "tls"):
            raise RawConnectError(f"scheme {url.scheme} is not supported by the fast reader")
        host, port = url.hostname or "127.0.0.1", url.port or 4222
        reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE * 4)
        line = await reader.readline()
        if not line.startswith(b"INFO "):
            writer.close()
            raise RawConnectError(f"unexpected greeting {line[:40]!r}")
        info = json.loads(line[5:])
        ctx = natsconn.tls_context(s)
        if ctx is None and (url.scheme == "tls" or info.get("tls_required")):
            ctx = ssl.create_default_context()
        if ctx is not None:
            await writer.start_tls(ctx, server_hostname=host)
        fields = connect_fields(
            s, info, unquote(url.username or "") or None, unquote(url.password or "") or None
        )
        fields["tls_required"] = ctx is not None
        writer.write(b"CONNECT " + json.dumps(fields).encode() + b"\r\nPING\r\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if line.startswith(b"PONG"):
                return cls(reader, writer)
            if line.startswith(b"-ERR") or not line:
                writer.close()
                raise RawConnectError(line.decode(errors="replace").strip() or "connection closed")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
