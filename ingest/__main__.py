"""`userstats-ingest` / `python -m ingest`: run the writer, or one of its maintenance commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from ingest import maintenance
from ingest.db import DatabaseError
from ingest.rebuild import RebuildError
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
    rb = sub.add_parser(
        "rebuild",
        help="rebuild the tables from stream seq 1 into a shadow file, then swap it in "
        "(into the running ingest if there is one)",
    )
    rb.add_argument("--to-seq", type=int, help="stop at this stream sequence")
    rb.add_argument("--output", type=Path, help="write the rebuilt tables to this file and swap nothing")
    dl = sub.add_parser("dead-letters", help="list the messages recorded as dead letters")
    dl.add_argument("--limit", type=int, default=20)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = cli.load_settings(args)
    logs.configure(args.log_level or settings.log_level)
    try:
        if args.cmd == "rebuild":
            sys.exit(asyncio.run(maintenance.rebuild(settings, args.to_seq, args.output)))
        elif args.cmd == "dead-letters":
            sys.exit(asyncio.run(maintenance.dead_letters(settings, args.limit)))
        asyncio.run(IngestService(settings).run())
    except (DatabaseError, PortInUseError, ConnectError, RebuildError) as exc:
        log.error("%s", exc)
        sys.exit(1)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
