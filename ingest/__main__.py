"""`userstats-ingest` / `python -m userstats.ingest`: run the writer, or one of its maintenance commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from userstats.ingest import import_source, importer, maintenance
from userstats.ingest.db import DatabaseError
from userstats.ingest.journal import JournalError
from userstats.ingest.rebuild import RebuildError
from userstats.ingest.service import IngestService
from userstats.shared import cli
from userstats.shared.http import PortInUseError
from userstats.shared.natsconn import ConnectError
from userstats.shared.replication import ReplicationError

log = logging.getLogger("userstats.ingest")


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


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
    rb.add_argument("--to-seq", type=positive_int, help="stop at this stream sequence")
    rb.add_argument(
        "--output",
        type=Path,
        help="write the rebuilt tables to this new file and swap nothing (never the live database)",
    )
    rb.add_argument("--force", action="store_true", help="let --output replace an existing file")
    dl = sub.add_parser("dead-letters", help="list the messages recorded as dead letters")
    dl.add_argument("--limit", type=positive_int, default=20, help="newest N (default %(default)s)")
    im = sub.add_parser(
        "import-sqlite",
        help="append the history in a kryten-userstats 0.7.1 SQLite file to the stream "
        "(running it again imports nothing twice)",
    )
    im.add_argument("path", type=Path, help="the 0.7.1 database file (data/userstats.db)")
    im.add_argument(
        "--source",
        default=importer.DEFAULT_SOURCE,
        help="name of this history; a later import with the same name replaces its counts "
        "(default: %(default)s)",
    )
    im.add_argument("--dry-run", action="store_true", help="read and report; publish nothing")
    im.add_argument(
        "--wait",
        type=float,
        default=60.0,
        help="seconds to wait for a running ingest to project the import (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = cli.load_settings(args)
    cli.configure_logging(args.log_level or settings.log_level)
    try:
        if args.cmd == "rebuild":
            sys.exit(asyncio.run(maintenance.rebuild(settings, args.to_seq, args.output, args.force)))
        elif args.cmd == "import-sqlite":
            sys.exit(
                asyncio.run(importer.run_import(settings, args.path, args.source, args.dry_run, args.wait))
            )
        elif args.cmd == "dead-letters":
            sys.exit(asyncio.run(maintenance.dead_letters(settings, args.limit)))
        asyncio.run(IngestService(settings).run())
    except import_source.SourceError as exc:
        log.error("%s", exc)
        sys.exit(2)
    except (DatabaseError, PortInUseError, ConnectError, RebuildError, ReplicationError, JournalError) as exc:
        log.error("%s", exc)
        sys.exit(1)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
