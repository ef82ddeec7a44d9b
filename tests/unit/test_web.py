"""Issue 19, pure parts: query strings to request fields, the chart, the HTTP socket."""

from __future__ import annotations

import socket

import pytest
from userstats.query import charts
from userstats.query.api import FieldError, fields_from_query
from userstats.shared.http import bind
from userstats.shared.messages import SnapshotRow


def test_query_strings_become_the_nats_request_object() -> None:
    assert fields_from_query([("username", "Alice"), ("limit", "5")]) == {"username": "Alice", "limit": "5"}
    assert fields_from_query([("limits.top_users", "3"), ("limits.leaderboards", "2"), ("channel", "c")]) == {
        "limits": {"top_users": "3", "leaderboards": "2"},
        "channel": "c",
    }
    # min_seq and timeout are envelope fields that parse() wants as numbers
    assert fields_from_query([("min_seq", "12"), ("timeout", "2.5")]) == {"min_seq": 12, "timeout": 2.5}
    assert fields_from_query([("min_seq", "soon")]) == {"min_seq": "soon"}  # parse() refuses it
    assert fields_from_query([("channel", ""), ("domain", "cytu.be")]) == {
        "domain": "cytu.be"
    }  # empty = absent


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([("username", "a"), ("username", "b")], "parameter username given more than once"),
        ([("limits", "5"), ("limits.top_users", "3")], "parameter limits.top_users conflicts with limits"),
        ([("limits..x", "1")], "invalid parameter name 'limits..x'"),
    ],
)
def test_query_strings_that_say_two_things(items: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(FieldError, match=message):
        fields_from_query(items)


def test_population_chart_geometry() -> None:
    rows = [
        SnapshotRow("2026-01-01T00:10:00+00:00", 4, 1),
        SnapshotRow("2026-01-01T00:00:00+00:00", 0, 0),  # newest first, as the reply has them
        SnapshotRow("2026-01-01T00:05:00+00:00", 8, 2),
    ]
    chart = charts.population(rows)
    assert chart is not None and chart.y_max == 8
    assert chart.series_json == "[[1767225600,1767225900,1767226200],[0,8,4],[0,2,1]]"
    assert chart.connected == "4.0,156.0 300.0,4.0 596.0,80.0"  # oldest at the left, the peak at the top
    assert chart.start == "2026-01-01T00:00:00+00:00" and chart.end == "2026-01-01T00:10:00+00:00"
    assert charts.population([]) is None
    one = charts.population([SnapshotRow("2026-01-01T00:00:00+00:00", 3, 3)])
    assert one is not None and one.connected == "4.0,4.0 596.0,4.0"  # one snapshot: a line, not a dot


def test_http_sockets_say_tcp_so_asyncio_sets_nodelay() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
