"""Fetch a replica's /metrics (e.g. from `make demo`) and print the userstats figures.

    .venv/bin/python examples/metrics_example.py [URL]

URL defaults to http://127.0.0.1:28282/metrics.
"""

from __future__ import annotations

import sys
import urllib.request


def userstats_figures(text: str) -> list[tuple[str, float]]:
    """(series, value) for every userstats_* sample in a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if line.startswith("userstats_"):
            series, _, value = line.rpartition(" ")
            out.append((series, float(value)))
    return out


def main(url: str) -> None:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    figures = userstats_figures(text)
    width = max((len(s) for s, _ in figures), default=0)
    for series, value in figures:
        if "_bucket{" not in series:  # histogram buckets are for Prometheus, not for reading
            print(f"{series:{width}}  {value:,.6g}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:28282/metrics")
