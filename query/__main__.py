"""`userstats-query` / `python -m userstats.query`: run a read-only replica."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from userstats.query.service import QueryService
from userstats.shared import cli
from userstats.shared.http import PortInUseError
from userstats.shared.natsconn import ConnectError

log = logging.getLogger("userstats.query")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="userstats-query",
        description="userstats query replica: loads ingest's newest snapshot, follows the stream, "
        "answers the kryten-userstats NATS API and serves /metrics and /health.",
    )
    cli.add_common(parser)
    args = parser.parse_args(argv)
    settings = cli.load_settings(args)
    cli.configure_logging(args.log_level or settings.log_level)
    try:
        asyncio.run(QueryService(settings).run())
    except (ConnectError, PortInUseError) as exc:
        log.error("%s", exc)
        sys.exit(1)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
