"""Issue 19: the HTTP JSON API answers as the NATS API does, through the same dispatcher.

A live stack (nats-server, ingest, one replica as processes) holds tests/webcorpus.py's
log; every read command is asked both ways and the answers compared.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from userstats.query.api import LIVE_COMMANDS, READ_COMMANDS
from userstats.shared import requests

from testbed.harness import Service, Stack, free_port, wait_for
from tests.projection_helpers import Log
from tests.webcorpus import BASE, ROOM, XSS_USER, Live, live_stack

# Every read command with parameters that give a non-trivial answer on the corpus.
ASKS: list[tuple[str, dict[str, Any]]] = [
    ("user.stats", {"username": "alice", "channel": ROOM}),
    ("user.stats", {"username": "ALICE"}),
    ("user.profile", {"username": "bob", "channel": ROOM}),
    ("user.messages", {"username": "alice"}),
    ("user.activity", {"username": "alice", "channel": ROOM}),
    ("user.kudos", {"username": "alice"}),
    ("stats.global", {"channel": ROOM}),
    ("channel.top_users", {"channel": ROOM, "limit": "2"}),
    ("channel.population", {"channel": ROOM, "hours": "1.5"}),
    ("channel.media_history", {"channel": ROOM, "limit": "5"}),
    ("channel.watermarks", {"channel": ROOM, "days": "1"}),
    ("channel.movie_votes", {"channel": ROOM}),
    ("channel.all_stats", {"channel": ROOM, "limits": {"top_users": "2", "leaderboards": "1"}}),
    ("channel.list", {}),
    ("channel.list", {"domain": "cytu.be"}),
    ("leaderboard.messages", {"channel": ROOM, "limit": "3"}),
    ("leaderboard.kudos", {"limit": "5"}),
    ("leaderboard.emotes", {}),
    ("leaderboard.all", {"limit": "2"}),
    ("timeseries.messages", {"channel": ROOM, "start_time": BASE.isoformat()}),
    ("timeseries.kudos", {"channel": ROOM}),
    ("system.ping", {}),
    ("system.health", {}),
    ("system.stats", {}),
    ("alias.list", {}),
    ("alias.get", {"username": "alice"}),
    ("alias.find", {"alias": "nobody"}),
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_stack(tmp_path_factory.mktemp("http")) as stack:
        yield stack


def query_string(params: dict[str, Any]) -> str:
    flat: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, dict):
            flat += [(f"{key}.{k}", str(v)) for k, v in value.items()]
        else:
            flat.append((key, str(value)))
    return urlencode(flat)


def get(live: Live, path: str, **headers: str) -> httpx.Response:
    return httpx.get(live.url + path, headers=headers, timeout=10)


def raw_status(live: Live, target: str) -> int:
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = conn.recv(4096)
    return int(head.split(b" ", 2)[1])


def without_live_figures(command: str, reply: dict[str, Any]) -> dict[str, Any]:
    """Uptime, the time of day and the request counter differ between any two answers."""
    data = reply.get("data")
    if command == "channel.all_stats":
        data = {k: v for k, v in data.items() if k != "system"}
    elif command == "system.stats":
        data = {k: v for k, v in data.items() if k != "commands_processed"}
    elif command in ("system.ping", "system.health"):
        data = sorted(data)
    return {**reply, "data": data}


def test_every_read_command_answers_as_on_nats(live: Live) -> None:
    assert {c for c, _ in ASKS} == set(READ_COMMANDS)  # a new read command must be added here
    for command, params in ASKS:
        over_http = get(live, f"/api/v1/{command}?{query_string(params)}")
        assert over_http.status_code == 200, (command, over_http.text)
        assert over_http.headers["content-type"] == "application/json"
        over_nats = live.ask(command, **params)
        assert over_nats["success"] is True, over_nats
        assert list(over_http.json()) == list(over_nats)  # the envelope's keys, in order
        assert without_live_figures(command, over_http.json()) == without_live_figures(command, over_nats), (
            command
        )
    top = get(live, f"/api/v1/channel.top_users?channel={ROOM}&limit=2").json()["data"]["top_users"]
    assert [row["username"] for row in top] == ["alice", "bob"]  # 13 and 7 lines: the corpus' figures


def test_channel_list_has_every_channel_with_its_figures(live: Live) -> None:
    """(Before the tests below publish more.)"""
    channels = get(live, "/api/v1/channel.list").json()["data"]["channels"]
    room = channels[0]
    assert room["domain"] == "cytu.be" and room["channel"] == ROOM
    assert room["messages"] == 13 + 7 + 5 + 1  # alice, bob and the two hostile names
    assert room["current"]["connected_count"] == 4
    assert [c["channel"] for c in channels] == [ROOM, "OtherRoom"]
    assert get(live, "/api/v1/channel.list?domain=cy.tube").json()["data"]["channels"] == []


@pytest.mark.parametrize(
    ("path", "status", "nats_body", "message"),
    [
        ("/api/v1/user.stats", 400, {"command": "user.stats"}, "username required"),
        ("/api/v1/user.stats?username=", 400, {"command": "user.stats", "username": ""}, "username required"),
        (
            "/api/v1/channel.top_users?channel=x&limit=many",
            400,
            {"command": "channel.top_users", "channel": "x", "limit": "many"},
            "invalid parameter limit",
        ),
        (
            "/api/v1/system.stats?min_seq=soon",
            400,
            {"command": "system.stats", "min_seq": "soon"},
            "min_seq must be a non-negative integer",
        ),
        (
            "/api/v1/timeseries.kudos?start_time=yesterday",
            400,
            {"command": "timeseries.kudos", "start_time": "yesterday"},
            "start_time: not an ISO-8601 date or date-time: 'yesterday'",
        ),
        ("/api/v1/nope.nope", 404, {"command": "nope.nope"}, "Unknown command: nope.nope"),
        (
            "/api/v1/system.ping?service=robot",
            400,
            {"command": "system.ping", "service": "robot"},
            "Command intended for 'robot', not 'userstats'",
        ),
    ],
)
def test_bad_input_gets_the_nats_error(
    live: Live, path: str, status: int, nats_body: dict[str, Any], message: str
) -> None:
    reply = get(live, path)
    assert reply.status_code == status
    assert reply.headers["cache-control"] == "no-store" and "etag" not in reply.headers
    nats_reply = live.ask(**nats_body)
    body = reply.json()
    assert body == {**nats_reply, "as_of_seq": body["as_of_seq"]}
    assert body["success"] is False and message in body["error"]


def test_what_only_http_can_get_wrong(live: Live) -> None:
    write = get(live, "/api/v1/alias.add?username=alice&alias=al")
    assert (
        write.status_code == 405 and "send it over NATS (kryten.userstats.command)" in write.json()["error"]
    )
    assert live.ask("alias.get", username="alice")["data"]["aliases"] == []  # nothing was written
    post = httpx.post(live.url + "/api/v1/user.stats?username=alice", timeout=5)
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD, OPTIONS"
    assert "POST is not supported" in post.json()["error"]
    twice = get(live, "/api/v1/user.stats?username=alice&username=bob")
    assert twice.status_code == 400 and twice.json()["error"] == "parameter username given more than once"
    long = get(live, "/api/v1/user.stats?username=" + "x" * 60_000)
    assert long.status_code == 400 and long.json() == {
        **live.ask("user.stats", username="x" * 60_000),
        "as_of_seq": long.json()["as_of_seq"],
    }
    # past 64 KiB uvicorn's parser refuses the request line itself; the replica goes on
    assert raw_status(live, "/api/v1/user.stats?username=" + "x" * 70_000) == 400  # httpx refuses it
    assert get(live, "/api/v1/system.ping").status_code == 200
    head = httpx.head(live.url + "/api/v1/channel.list", timeout=5)
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"]
    index = get(live, "/api/v1").json()
    assert (
        set(index["commands"]) == set(READ_COMMANDS) and not set(index["commands"]) & requests.WRITE_COMMANDS
    )
    cors = httpx.options(live.url + "/api/v1/user.stats", timeout=5)
    assert cors.status_code == 204 and "If-None-Match" in cors.headers["access-control-allow-headers"]
    assert get(live, "/api/v1/channel.list").headers["access-control-allow-origin"] == "*"


def test_etag_from_as_of_seq_and_304(live: Live) -> None:
    path = "/api/v1/user.stats?username=alice"
    first = get(live, path)
    tag = first.headers["etag"]
    assert tag.startswith(f'"{first.json()["as_of_seq"]}-') and first.headers["cache-control"] == "no-cache"
    again = get(live, path, **{"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    assert get(live, path, **{"If-None-Match": f'"other", W/{tag}'}).status_code == 304
    # a line from someone else leaves alice's figures (and her reply's as_of_seq) as they were
    live.publish(Log(BASE).at(3950).chat("bob", "still here", ROOM))
    assert get(live, path, **{"If-None-Match": tag}).status_code == 304
    seq = live.publish(Log(BASE).at(3960).chat("alice", "me too", ROOM))
    changed = get(live, path, **{"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert changed.json()["as_of_seq"] == seq
    for command in LIVE_COMMANDS:  # uptime and counters: never the same answer twice
        query = f"?channel={ROOM}" if command.startswith("channel.") else ""  # system.* take none
        reply = get(live, f"/api/v1/{command}{query}")
        assert reply.status_code == 200 and "etag" not in reply.headers
        assert reply.headers["cache-control"] == "no-store"


def test_min_seq_and_timeout_over_http(live: Live) -> None:
    seq = live.publish(Log(BASE).at(3970).chat("alice", "one more", ROOM))
    reply = get(live, f"/api/v1/user.messages?username=alice&channel={ROOM}&min_seq={seq}").json()
    assert reply["as_of_seq"] >= seq and reply["data"]["message_count"] >= 13
    late = get(live, f"/api/v1/system.stats?min_seq={seq + 1000}&timeout=0.3")
    assert late.status_code == 503 and late.headers["retry-after"] == "1"
    assert (
        late.json()["error"]
        == f"Timed out after 0.3 s waiting for seq {seq + 1000}; this replica is at seq {seq}"
    )


class _Markup(HTMLParser):
    """What a CSP without 'unsafe-inline' would refuse: inline scripts, styles, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "style" or "style" in names or any(k.startswith("on") for k in names):
            self.inline.append(f"<{tag} {attrs}>")
        if tag == "script":
            self._in_script = True
            if not names.get("src"):
                self.inline.append("<script> without src")
        if tag == "a" and (names.get("href") or "").lower().startswith("javascript:"):
            self.inline.append(f"javascript: link {attrs}")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script text")


def test_pages_send_a_strict_csp_and_no_inline_code(live: Live) -> None:
    for path in (
        "/",
        f"/channel/cytu.be/{ROOM}",
        "/user/alice",
        "/user/" + quote(XSS_USER, safe=""),
        "/docs",
    ):
        page = get(live, path)
        assert page.status_code == 200, path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        markup = _Markup()
        markup.feed(page.text)
        assert markup.inline == [], path
    channel = get(live, f"/channel/cytu.be/{ROOM}")
    assert (
        "&lt;script&gt;window.__xss=1&lt;/script&gt;" in channel.text and "<script>window" not in channel.text
    )
    assert (
        get(live, f"/channel/cytu.be/{ROOM}", **{"If-None-Match": channel.headers["etag"]}).status_code == 304
    )
    assert get(live, "/channel/cytu.be/NoSuchRoom").status_code == 404
    assert get(live, "/user/nobody-at-all").status_code == 404
    found = httpx.get(live.url + "/user?name=alice", timeout=5)
    assert found.status_code == 303 and found.headers["location"] == "/user/alice"


def test_openapi_document_and_docs_page(live: Live) -> None:
    doc = get(live, "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {f"/api/v1/{c}" for c in READ_COMMANDS}
    for command in READ_COMMANDS:
        names = {p["name"] for p in doc["paths"][f"/api/v1/{command}"]["get"]["parameters"]}
        fields = set(requests.COMMAND_PARAMS[command].__struct_fields__)
        if command == "channel.all_stats":
            fields = (fields - {"limits"}) | {
                "limits.top_users",
                "limits.media_history",
                "limits.leaderboards",
            }
        assert names == fields | {"min_seq", "timeout"}, command
    user_stats = doc["paths"]["/api/v1/user.stats"]["get"]
    data = user_stats["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"]
    assert data == {"$ref": "#/components/schemas/UserStats"}
    assert "all_messages" in doc["components"]["schemas"]["UserStats"]["properties"]
    docs = get(live, "/docs")
    assert docs.status_code == 200 and docs.text.count('<form action="/api/v1/') == len(READ_COMMANDS)
    assert "cdn" not in docs.text.lower() and "https://" not in docs.text


def test_static_files(live: Live) -> None:
    page = get(live, "/").text
    url = page.split('<script src="', 1)[1].split('"', 1)[0]
    script = get(live, url)
    assert script.status_code == 200 and "immutable" in script.headers["cache-control"]
    assert script.headers["content-type"].startswith("text/javascript")
    assert get(live, url.split("?")[0], **{"If-None-Match": script.headers["etag"]}).status_code == 304
    assert get(live, "/static/vendor/uPlot.LICENSE.txt").status_code == 200
    assert get(live, "/static/../pages.py").status_code == 404
    assert get(live, "/favicon.ico").headers["content-type"] == "image/svg+xml"


def test_pages_off_the_bind_address_and_the_size_limit(live: Live) -> None:
    """`userstats.web_pages` off keeps the API; `userstats.http_host` is where it listens;
    `userstats.request_max_bytes` bounds the query string."""
    port = free_port()
    workdir = live.stack.tmp / "replica-127.0.0.2"
    workdir.mkdir()
    env = live.stack.env(
        USERSTATS_METRICS_PORT=str(port),
        USERSTATS_REPLICA_DIR=str(workdir),
        USERSTATS_WEB_PAGES="false",
        USERSTATS_HTTP_HOST="127.0.0.2",
        USERSTATS_REQUEST_MAX_BYTES="1024",
    )
    live.stack.services.append(Service("query", env, live.stack.tmp, port).start())  # stopped with the stack
    base = f"http://127.0.0.2:{port}"

    def ready() -> bool:
        try:
            return httpx.get(base + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    asyncio.run(wait_for(ready, timeout=30, what="the replica on 127.0.0.2"))
    assert httpx.get(base + "/api/v1/channel.list", timeout=5).json()["success"] is True
    for path in ("/", f"/channel/cytu.be/{ROOM}", "/user/alice"):
        assert httpx.get(base + path, timeout=5).status_code == 404, path
    # a query string over userstats.request_max_bytes: 413 with the NATS message, nothing run
    big = httpx.get(base + "/api/v1/user.stats?username=" + "x" * 1100, timeout=5)
    assert big.status_code == 413 and big.json()["error"] == "Request too large: 1109 bytes (limit 1024)"
    assert big.headers["cache-control"] == "no-store"
    ok = httpx.get(base + "/api/v1/user.stats?username=" + "x" * 900, timeout=5)
    # under the limit: the usual validation
    assert (
        ok.status_code == 400
        and ok.json()["error"] == "invalid parameter username: Expected `str` of length <= 200"
    )
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens there


def test_not_ready_is_503(stack: Stack) -> None:
    replica = stack.query()  # no ingest: no snapshot will ever come
    base = f"http://127.0.0.1:{replica.port}"

    def answered() -> httpx.Response | None:
        try:
            return httpx.get(base + "/api/v1/user.stats?username=alice", timeout=2)
        except httpx.HTTPError:
            return None

    reply = asyncio.run(wait_for(answered, timeout=30, what="the replica's HTTP port"))
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
    assert reply.json()["error"].startswith("not ready: ")
    page = httpx.get(base + "/", timeout=5)
    assert page.status_code == 503 and "not ready" in page.text
    assert json.loads(httpx.get(base + "/openapi.json", timeout=5).content)["paths"]  # docs need no tables


def test_keep_alive_requests_do_not_wait_for_delayed_acks(live: Live) -> None:
    """Without TCP_NODELAY on the replica's sockets every keep-alive answer took ~44 ms."""
    with httpx.Client(base_url=live.url, timeout=5) as client:  # one connection, reused
        times = []
        for _ in range(20):
            started = time.perf_counter()
            assert client.get("/api/v1/channel.list").status_code == 200
            times.append(time.perf_counter() - started)
    assert sorted(times)[10] < 0.02, times
