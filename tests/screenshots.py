"""`make screenshots`: the README's pictures of the channel page, desktop and phone.

    .venv/bin/python -m tests.screenshots docs/img

A private stack (nats-server, ingest, one replica) holds a simulated day of three
channels (the simulator's mix, one event every 4 s of channel time, ending now); Debian's
chromium, headless, opens the channel page and saves channel-desktop.png and channel-phone.png.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from selenium.webdriver.common.by import By
from userstats.sim.generator import Simulator

from testbed.harness import NatsServer, Stack, connect, publish_all
from tests.browser import chromium, problems, screenshot

EVENTS, STEP_US = 21_600, 4_000_000  # 24 hours


async def fill(url: str) -> None:
    start = int(time.time() * 1e6) - EVENTS * STEP_US
    nc = await connect(url)
    await publish_all(nc, list(Simulator(seed=7, start_us=start, step_us=STEP_US).events(EVENTS)))
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="userstats-shots-") as tmp:
        server = NatsServer(Path(tmp) / "nats-store")
        server.start()
        stack = Stack(Path(tmp), server)
        try:
            stack.ingest().wait_healthy()
            query = stack.query()
            query.wait_healthy()
            asyncio.run(fill(server.url))
            time.sleep(3)  # the replica follows within milliseconds; leave room for the last snapshot
            url = f"http://127.0.0.1:{query.port}/channel/cytu.be/420Grindhouse"
            for name, options, height in (("desktop", {}, 1400), ("phone", {"phone": True}, 1500)):
                with chromium(**options) as driver:  # type: ignore[arg-type]
                    driver.get(url)
                    deadline = time.monotonic() + 10
                    while not driver.find_elements(By.CSS_SELECTOR, "figure.drawn canvas"):
                        if time.monotonic() > deadline:
                            sys.exit("the chart was not drawn")
                        time.sleep(0.05)
                    if problems(driver):
                        sys.exit(f"console messages: {problems(driver)}")
                    screenshot(driver, args.out / f"channel-{name}.png", height)
                    print(args.out / f"channel-{name}.png")
        finally:
            stack.stop_all()
            server.stop()


if __name__ == "__main__":
    main()
