"""`userstats-ingest` / `python -m ingest`: run the writer, or one of its maintenance commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from ingest.db import DatabaseError
from ingest.service import IngestService
from shared import cli, logs
from shared.http import PortInUseError
from shared.natsconn import ConnectError

log = logging.getLogger("ingest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="userstats-ingest",
        description="userstats writer: projects the JetStream event stream into DuckDB "
        "and publishes snapshots.",
    )
    cli.add_common(parser)
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.add_parser("run", help="run the writer (the default)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = cli.load_settings(args)
    logs.configure(args.log_level or settings.log_level)
    try:
        asyncio.run(IngestService(settings).run())
    except (DatabaseError, PortInUseError, ConnectError) as exc:
        log.error("%s", exc)
        sys.exit(1)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
