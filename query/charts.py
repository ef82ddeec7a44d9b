"""The 24-hour population chart: the series the script draws, and an SVG for browsers without it.

Pure: snapshot rows in, numbers and SVG point lists out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec
from userstats.shared.messages import SnapshotRow

WIDTH, HEIGHT, PAD = 600, 160, 4


@dataclass(frozen=True)
class Chart:
    series_json: str  # [[unix seconds...], [connected...], [chatting...]], oldest first (uPlot's shape)
    connected: str  # SVG polyline points
    chatting: str
    y_max: int
    start: str  # ISO timestamps of the first and last snapshot
    end: str
    width: int = WIDTH
    height: int = HEIGHT


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def population(rows: list[SnapshotRow]) -> Chart | None:
    """None when there is nothing to draw."""
    if not rows:
        return None
    ordered = sorted(rows, key=lambda row: row.timestamp)
    xs = [_seconds(row.timestamp) for row in ordered]
    connected = [row.connected_count for row in ordered]
    chatting = [row.chat_count for row in ordered]
    y_max = max(1, *connected, *chatting)
    x0, span = xs[0], max(xs[-1] - xs[0], 1.0)

    def points(values: list[int]) -> str:
        out = []
        for x, v in zip(xs, values, strict=True):
            px = PAD + (x - x0) / span * (WIDTH - 2 * PAD)
            py = HEIGHT - PAD - v / y_max * (HEIGHT - 2 * PAD)
            out.append(f"{px:.1f},{py:.1f}")
        if len(out) == 1:  # one snapshot: a flat line across, not an invisible dot
            out.append(f"{WIDTH - PAD:.1f},{out[0].split(',')[1]}")
        return " ".join(out)

    series = msgspec.json.encode([[int(x) for x in xs], connected, chatting]).decode()
    return Chart(
        series, points(connected), points(chatting), y_max, ordered[0].timestamp, ordered[-1].timestamp
    )
