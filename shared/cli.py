"""Command-line pieces common to both services: --config, --log-level, --validate-config."""

from __future__ import annotations

import argparse
import json
import os
import sys

from shared import __version__, settings
from shared.settings import ConfigError, Settings


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="kryten-userstats style config.json (default: $USERSTATS_CONFIG, "
        "/etc/kryten/kryten-userstats/config.json, ./config.json, else built-in defaults)",
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR (default: config log_level)"
    )
    parser.add_argument(
        "--validate-config",
        action="store_true",
        help="check the configuration, print it (secrets masked) and exit",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def load_settings(args: argparse.Namespace) -> Settings:
    """Load settings or exit with status 2 and a message naming the bad key."""
    try:
        path = settings.find_config(args.config, dict(os.environ))
        s = settings.load(path)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.validate_config:
        print(json.dumps(settings.redacted(s), indent=2))
        print(f"configuration OK ({path or 'built-in defaults'})", file=sys.stderr)
        raise SystemExit(0)
    return s
