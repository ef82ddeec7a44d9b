"""Issue 19: the pages in a real browser (Debian's chromium, headless) against a live stack.

nats-server, ingest and a replica run as processes holding tests/webcorpus.py's log. The
browser must load every page without a console message (a CSP violation, a failed load or
an exception all land there), show the figures the NATS API gives for the same state, show
a new chat line within 2 seconds without a reload, keep hostile names and titles as text,
and fit a phone's width.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

from tests.browser import chromium, problems
from tests.projection_helpers import Log
from tests.webcorpus import BASE, OTHER, ROOM, XSS_TITLE, XSS_USER, XSS_USER2, Live, live_stack

CHANNEL = f"/channel/cytu.be/{ROOM}"
PAGES = ["/", CHANNEL, "/user/alice", "/user/" + quote(XSS_USER2, safe=""), "/docs"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_stack(tmp_path_factory.mktemp("browser")) as stack:
        yield stack


@pytest.fixture(scope="module")
def desktop() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


def load(driver: webdriver.Chrome, url: str, script: bool = True) -> None:
    driver.get(url)  # returns once the page has loaded
    if script and driver.find_elements(By.CSS_SELECTOR, "figure[data-series]"):
        wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "figure.drawn canvas"), "the chart")


def wait(driver: webdriver.Chrome, predicate: object, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except StaleElementReferenceException:
            pass  # the live script swapped the section in between: read it again
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def texts(driver: webdriver.Chrome, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def ranked(driver: webdriver.Chrome, section: str) -> list[dict[str, object]]:
    """A leaderboard table as the page shows it: [{"name": ..., "count": ...}]."""
    out = []
    for row in driver.find_elements(By.CSS_SELECTOR, f"#{section} table.ranked tbody tr"):
        cells = row.find_elements(By.TAG_NAME, "td")
        out.append({"name": cells[1].text, "count": int(cells[2].text.replace(",", ""))})
    return out


def figure(driver: webdriver.Chrome, element_id: str) -> int:
    return int(driver.find_element(By.ID, element_id).text.replace(",", ""))


def test_every_page_loads_without_a_console_message(live: Live, desktop: webdriver.Chrome) -> None:
    for path in PAGES:
        load(desktop, live.url + path)
        time.sleep(1.3)  # one refresh round of the live script too
        assert problems(desktop) == [], path
        assert desktop.find_element(By.TAG_NAME, "h1").text


def test_the_channel_page_shows_the_nats_figures(live: Live, desktop: webdriver.Chrome) -> None:
    load(desktop, live.url + CHANNEL)
    stats = live.ask("channel.all_stats", channel=ROOM, domain="cytu.be")["data"]
    listing = live.ask("channel.list", domain="cytu.be")["data"]["channels"]
    channel = stats["channel"]
    assert ranked(desktop, "top-chatters") == [
        {"name": r["username"], "count": r["count"]} for r in channel["top_users"]
    ]
    assert ranked(desktop, "kudos") == [
        {"name": r["username"], "count": r["count"]} for r in stats["leaderboards"]["kudos"]
    ]
    assert ranked(desktop, "emotes") == [
        {"name": r["emote"], "count": r["count"]} for r in stats["leaderboards"]["emotes"]
    ]
    # the corpus has each kind, so an empty table cannot pass for an equal one
    assert channel["top_users"] and stats["leaderboards"]["kudos"] and stats["leaderboards"]["emotes"]
    assert texts(desktop, "#media li .title") == [m["media_title"] for m in channel["media_history"]]
    votes = [
        [v["media_title"], str(v["upvotes"]), str(v["downvotes"]), str(v["score"])]
        for v in channel["movie_votes"]
    ]
    rows = desktop.find_elements(By.CSS_SELECTOR, "#votes tbody tr")
    assert [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows] == votes and votes
    current = channel["population"]["current"]
    assert figure(desktop, "connected") == current["connected_count"] > 0
    assert figure(desktop, "chatting") == current["chat_count"]
    room = next(c for c in listing if c["channel"] == ROOM)
    assert figure(desktop, "chat-lines") == room["messages"]
    assert figure(desktop, "high") == channel["watermarks"]["high"]["total_users"]
    assert figure(desktop, "low") == channel["watermarks"]["low"]["total_users"]
    # the chart holds the 24-hour history the reply has: uPlot drew one point per snapshot
    points = desktop.execute_script(
        "return JSON.parse(document.getElementById('population-chart').dataset.series)"
    )
    history = sorted(channel["population"]["history_24h"], key=lambda r: r["timestamp"])
    assert points[1] == [r["connected_count"] for r in history] and len(history) >= 10


def test_the_user_and_channel_list_pages_show_the_nats_figures(live: Live, desktop: webdriver.Chrome) -> None:
    load(desktop, live.url + "/user/ALICE")  # any case, as on NATS
    stats = live.ask("user.stats", username="alice", domain="cytu.be")["data"]
    assert desktop.find_element(By.TAG_NAME, "h1").text == stats["username"] == "alice"
    rows = [
        [td.text for td in row.find_elements(By.TAG_NAME, "td")[:2]]
        for row in desktop.find_elements(By.CSS_SELECTOR, "table.per-channel tbody tr")
    ]
    assert rows == [[c["channel"], str(c["count"])] for c in stats["all_messages"]] and rows
    assert texts(desktop, "b.big")[0] == str(stats["kudos_plusplus"]) != "0"
    assert figure(desktop, "pms") == stats["pms"]
    load(desktop, live.url + "/")
    listing = live.ask("channel.list")["data"]["channels"]
    shown = [
        [td.text for td in row.find_elements(By.TAG_NAME, "td")[:3]]
        for row in desktop.find_elements(By.CSS_SELECTOR, "table.channels tbody tr")
    ]
    assert shown == [[c["channel"], c["domain"], str(c["messages"])] for c in listing]
    assert {ROOM, OTHER} <= {c["channel"] for c in listing}


def test_hostile_names_and_titles_stay_text(live: Live, desktop: webdriver.Chrome) -> None:
    for path in (CHANNEL, "/user/" + quote(XSS_USER, safe=""), "/user/" + quote(XSS_USER2, safe="")):
        load(desktop, live.url + path)
        time.sleep(1.2)  # and after a live refresh swapped sections in
        assert desktop.execute_script("return window.__xss") is None, path
        assert desktop.find_elements(By.TAG_NAME, "img") == [], path  # the pages have no image at all
        sources = [s.get_attribute("src") for s in desktop.find_elements(By.TAG_NAME, "script")]
        assert all(src and src.startswith(live.url + "/static/") for src in sources), sources
        assert problems(desktop) == [], path
    load(desktop, live.url + CHANNEL)
    names = [row["name"] for row in ranked(desktop, "top-chatters")]
    assert XSS_USER in names and XSS_USER2 in names
    # titles are cleaned as 0.7.1 does ('.' and '_' become spaces): the markup stays
    title = live.ask("channel.media_history", channel=ROOM)["data"]["history"][0]["media_title"]
    assert title.startswith("<script>") and '"><img src=x onerror=' in title and title != XSS_TITLE
    assert texts(desktop, "#media li .title")[0] == title
    assert title in texts(desktop, "#votes td.name")
    load(desktop, live.url + "/user/" + quote(XSS_USER2, safe=""))
    assert desktop.find_element(By.TAG_NAME, "h1").text == XSS_USER2
    assert desktop.title.startswith(XSS_USER2)


def test_a_new_chat_line_shows_within_two_seconds(live: Live, desktop: webdriver.Chrome) -> None:
    load(desktop, live.url + CHANNEL)
    wait(
        desktop,
        lambda: "on" in (desktop.find_element(By.ID, "live-status").get_attribute("class") or ""),
        "live",
    )
    time.sleep(1.5)  # let a refresh round pass, so no swap races the reads below
    before = figure(desktop, "chat-lines")
    assert "dave" not in [r["name"] for r in ranked(desktop, "top-chatters")]
    log = Log(BASE).at(3900).join("dave", ROOM).chat("dave", "just arrived", ROOM)
    started = live.publish_timed(log)  # from the moment the bridge's line is sent
    wait(
        desktop,
        lambda: (
            "dave" in [r["name"] for r in ranked(desktop, "top-chatters")]
            and figure(desktop, "chat-lines") == before + 1
        ),
        "dave's line on the open page",
        timeout=5,
    )
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"{elapsed:.2f} s"
    assert (
        desktop.execute_script("return performance.getEntriesByType('navigation').length") == 1
    )  # no reload
    assert problems(desktop) == []


def test_a_phone_sized_viewport_has_no_horizontal_scroll(live: Live) -> None:
    with chromium(phone=True) as phone:
        for path in PAGES:
            load(phone, live.url + path)
            width = phone.execute_script("return window.innerWidth")
            scroll = phone.execute_script(
                "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
            )
            assert width <= 420 and scroll <= width, f"{path}: {scroll} px wide in a {width} px viewport"
            assert problems(phone) == [], path


def test_the_pages_work_without_javascript(live: Live) -> None:
    with chromium() as driver:
        driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
        load(driver, live.url + CHANNEL, script=False)
        stats = live.ask("channel.all_stats", channel=ROOM, domain="cytu.be")["data"]
        names = [r["name"] for r in ranked(driver, "top-chatters")]
        assert names == [r["username"] for r in stats["channel"]["top_users"]]
        svg = driver.find_element(By.CSS_SELECTOR, "#population-chart svg.chart-svg")
        assert svg.is_displayed() and svg.find_elements(By.TAG_NAME, "polyline")
        assert driver.find_elements(By.CSS_SELECTOR, "#population-chart canvas") == []
