"""`userstats-ask`: send one command to userstats and print the reply (no nats CLI needed).

    userstats-ask system.stats
    userstats-ask user.stats username=NightOwl channel=420Grindhouse
    userstats-ask --subject cytube.query.userstats.cytu.be.user.stats username=NightOwl
    userstats-ask channel.all_stats 'limits={"top_users": 5}'

Parameters are key=value; a value that parses as JSON is sent as JSON, otherwise as a string.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import nats
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from shared.subjects import COMMAND_SUBJECT


def parse_params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"parameters are key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


async def ask(url: str, subject: str, body: dict[str, Any], timeout: float) -> Any:
    # NATS_URL may list every node of a cluster, comma-separated: any one that answers will do
    servers = [u.strip() for u in url.split(",") if u.strip()]
    nc = await nats.connect(servers, name="userstats-ask", max_reconnect_attempts=0)
    try:
        msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
        return json.loads(msg.data)
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="userstats-ask", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", help="e.g. system.stats (omit with --subject for the seed API)", nargs="?")
    parser.add_argument("params", nargs="*", help="key=value parameters")
    parser.add_argument("--subject", default=COMMAND_SUBJECT, help=f"default {COMMAND_SUBJECT}")
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    params = list(args.params)
    if args.command and "=" in args.command:
        params.insert(0, args.command)
        args.command = None
    body = parse_params(params)
    if args.command:
        body["command"] = args.command
    try:
        reply = asyncio.run(ask(args.nats_url, args.subject, body, args.timeout))
    except NoRespondersError:
        sys.exit(f"no userstats replica is listening on {args.subject}")
    except (NatsTimeoutError, TimeoutError):
        sys.exit(f"no reply within {args.timeout:g} s")
    except OSError as exc:
        sys.exit(f"cannot connect to {args.nats_url}: {exc}")
    print(json.dumps(reply, indent=2, ensure_ascii=False))
    sys.exit(0 if reply.get("success", True) else 1)


if __name__ == "__main__":
    main()
