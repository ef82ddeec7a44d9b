"""Logging set-up, called once from each service's __main__."""

from __future__ import annotations

import logging
import sys


def configure(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # Third-party chatter at INFO is noise in our logs.
    for noisy in ("nats", "uvicorn", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
