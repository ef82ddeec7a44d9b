"""Minting NATS operator/account/user JWTs and a .creds file, for the decentralized-auth test.

What `nsc` would make: an operator, a system account, an account with JetStream enabled
and a user of it, all signed with fresh nkeys. The server takes the operator JWT and the
account JWTs preloaded into its memory resolver; clients take the user's .creds file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def _pub(kp: nkeys.KeyPair) -> str:
    return str(kp.public_key.decode())


def _jwt(claims: dict[str, Any], subject: str, name: str, signer: nkeys.KeyPair) -> str:
    body: dict[str, Any] = {
        "jti": "",
        "iat": int(time.time()),
        "iss": _pub(signer),
        "name": name,
        "sub": subject,
    }
    body.update(claims)
    body["jti"] = base64.b32encode(hashlib.new("sha512_256", json.dumps(body).encode()).digest()).decode()
    body["jti"] = body["jti"].rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body).encode())
    signature = signer.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{_b64(signature)}"


UNLIMITED = {
    "subs": -1,
    "data": -1,
    "payload": -1,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}
JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


@dataclass
class Decentralized:
    server_conf: str  # nats-server config lines: operator, system account, memory resolver
    creds: Path  # a user of the JetStream-enabled account


def decentralized(d: Path) -> Decentralized:
    operator = _key(nkeys.PREFIX_BYTE_OPERATOR)
    system, account = _key(nkeys.PREFIX_BYTE_ACCOUNT), _key(nkeys.PREFIX_BYTE_ACCOUNT)
    user = _key(nkeys.PREFIX_BYTE_USER)
    op_jwt = _jwt(
        {"nats": {"type": "operator", "version": 2, "system_account": _pub(system)}},
        _pub(operator),
        "test-operator",
        operator,
    )
    sys_jwt = _jwt(
        {"nats": {"type": "account", "version": 2, "limits": UNLIMITED}}, _pub(system), "SYS", operator
    )
    acc_jwt = _jwt(
        {"nats": {"type": "account", "version": 2, "limits": {**UNLIMITED, **JETSTREAM}}},
        _pub(account),
        "userstats",
        operator,
    )
    user_jwt = _jwt(
        {"nats": {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}},
        _pub(user),
        "userstats-user",
        account,
    )
    creds = d / "userstats.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )
    creds.chmod(0o600)
    conf = (
        f"operator: {op_jwt}\n"
        f"system_account: {_pub(system)}\n"
        "resolver: MEMORY\n"
        f"resolver_preload: {{\n  {_pub(system)}: {sys_jwt}\n  {_pub(account)}: {acc_jwt}\n}}\n"
    )
    return Decentralized(conf, creds)
