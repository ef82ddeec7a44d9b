"""Debian's chromium and chromium-driver through selenium, headless, offline.

`make test` installs both packages when they are missing and it runs as root (CI does);
elsewhere a missing browser fails the page tests with what to install, it never skips them.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

# As root and offline: no sandbox, no GPU, and nothing that would call home.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]
PHONE = {"width": 390, "height": 844, "pixelRatio": 2}  # an iPhone 12-14 sized viewport


def binaries() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(
            "the page tests need Debian's chromium and chromium-driver: "
            "apt-get install chromium chromium-driver (make test does this when run as root)"
        )
    return chromium, driver


@contextmanager
def chromium(width: int = 1280, height: int = 900, phone: bool = False) -> Iterator[webdriver.Chrome]:
    """A fresh headless browser with its own profile; console messages are kept (`console`)."""
    binary, driver_path = binaries()
    profile = tempfile.mkdtemp(prefix="userstats-chromium-")
    options = Options()
    options.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if phone:
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Console messages since the last call (errors, CSP reports, failed loads, exceptions)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")
    return entries


def problems(driver: webdriver.Chrome) -> list[str]:
    """Console errors and warnings: a page under test must have none."""
    return [f"{e['level']}: {e['message']}" for e in console(driver) if e["level"] in ("SEVERE", "WARNING")]


def screenshot(driver: webdriver.Chrome, path: Path, height: int | None = None) -> None:
    """The page from its top, `height` CSS pixels tall (default: all of it), as PNG."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(height or size["height"], size["height"])}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
