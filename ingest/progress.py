"""Progress of long work: a bar with rate and ETA on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)


class Progress:
    """A bar with rate and ETA on a terminal; a log line every few seconds otherwise."""

    def __init__(
        self,
        start: int,
        target: int,
        tty: bool | None = None,
        every: float = 5.0,
        label: str = "rebuild",
        unit: str = "events",
    ) -> None:
        self.start, self.target = start, target
        self.label, self.unit = label, unit
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.every = every
        self.began = time.monotonic()
        self._last = 0.0

    def update(self, seq: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < (0.2 if self.tty else self.every):
            return
        self._last = now
        done = max(0, seq - self.start + 1)
        total = max(1, self.target - self.start + 1)
        elapsed = max(now - self.began, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        pct = min(100.0, 100.0 * done / total)
        if self.tty:
            bar = "#" * int(pct / 5) + "-" * (20 - int(pct / 5))
            sys.stderr.write(
                f"\r{self.label} [{bar}] {pct:5.1f}% {done:,}/{total:,} {self.unit} {rate:,.0f}/s "
                f"ETA {eta:,.1f} s "
            )
            if final:
                sys.stderr.write("\n")
            sys.stderr.flush()
        else:
            log.info(
                "%s: %.1f%% (%d/%d %s, %.0f/s, ETA %.1f s)",
                self.label,
                pct,
                done,
                total,
                self.unit,
                rate,
                eta,
            )
