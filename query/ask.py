"""`userstats-ask`: send one command to userstats and print the reply (no nats CLI needed).

    userstats-ask system.stats
    userstats-ask user.stats username=420GUser1 channel=420Grindhouse
    userstats-ask --subject cytube.query.userstats.cytu.be.user.stats username=420GUser1
    userstats-ask channel.all_stats 'limits={"top_users": 5}'

Parameters are key=value; a value that parses as JSON is sent as JSON, otherwise as a string.
Exit status: 0 for a success reply, 1 for an error reply or when NATS or the service cannot
be reached (one line on stderr says which), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from userstats.shared import __version__, cli, natsconn
from userstats.shared.subjects import COMMAND_SUBJECT

DEFAULT_URL = "nats://127.0.0.1:4222"


def parse_params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"userstats-ask: parameters are key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


async def ask(url: str, subject: str, body: dict[str, Any], timeout: float) -> Any:
    # NATS_URL may list every node of a cluster, comma-separated: any one that answers will do
    opts = {
        "servers": [u.strip() for u in url.split(",") if u.strip()],
        "name": "userstats-ask",
        "connect_timeout": timeout,
        "allow_reconnect": False,
    }
    nc = await natsconn.open_connection(opts, wait=0)
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
    parser.add_argument(
        "--nats-url",
        default=os.environ.get("NATS_URL", DEFAULT_URL),
        help=f"NATS server(s), comma-separated (default: $NATS_URL, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for NATS to answer the connection, and then for the reply (default 10)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    params = list(args.params)
    if args.command and "=" in args.command:
        params.insert(0, args.command)
        args.command = None
    body = parse_params(params)
    if args.command:
        body["command"] = args.command
    try:
        reply = asyncio.run(ask(args.nats_url, args.subject, body, args.timeout))
    except natsconn.ConnectError as exc:
        sys.exit(f"userstats-ask: {exc}")
    except NoRespondersError:
        sys.exit(f"userstats-ask: no userstats replica is listening on {args.subject}")
    except (NatsTimeoutError, TimeoutError):
        sys.exit(f"userstats-ask: no reply on {args.subject} within {args.timeout:g} s")
    except (NatsError, OSError) as exc:
        sys.exit(f"userstats-ask: {type(exc).__name__}: {exc}")
    except json.JSONDecodeError as exc:
        sys.exit(f"userstats-ask: the reply is not JSON ({exc})")
    cli.emit(json.dumps(reply, indent=2, ensure_ascii=False))
    sys.exit(0 if not isinstance(reply, dict) or reply.get("success", True) else 1)


if __name__ == "__main__":
    main()
