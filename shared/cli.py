"""Command-line pieces common to the services and tools: --config, --log-level, --validate-config,
the logging set-up, and printing to a pipe that may close early (`... | head`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from userstats.shared import __version__, settings, settings_load
from userstats.shared.settings import LOG_LEVELS, Settings
from userstats.shared.settings_load import ConfigError


def configure_logging(level: str) -> None:
    """Logging set-up, called once from each service's __main__."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # Third-party chatter at INFO is noise in our logs.
    for noisy in ("nats", "uvicorn", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def log_level(value: str) -> str:
    """argparse type: a logging level name, any case."""
    level = value.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="kryten-userstats style config.json (default: $USERSTATS_CONFIG, "
        "/etc/kryten/kryten-userstats/config.json, ./config.json, else built-in defaults)",
    )
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        type=log_level,
        help=f"{', '.join(LOG_LEVELS)} (default: config log_level)",
    )
    parser.add_argument(
        "--validate-config",
        action="store_true",
        help="check the configuration, print it (secrets masked) and exit",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def emit(text: str) -> None:
    """Print to stdout; a reader that stops early (`| head`) ends the program quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None


def load_settings(args: argparse.Namespace) -> Settings:
    """Load settings or exit with status 2 and a message naming the bad key."""
    try:
        path = settings_load.find_config(args.config, dict(os.environ))
        s = settings_load.load(path)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.validate_config:
        emit(json.dumps(settings.redacted(s), indent=2))
        print(f"configuration OK ({path or 'built-in defaults'})", file=sys.stderr)
        raise SystemExit(0)
    return s
