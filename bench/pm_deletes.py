"""What erasing a raw PM from the stream costs the NATS server, and how fast ingest drains a
backlog of them.

    python -m bench.pm_deletes [--messages 100000] [--deletes 300] [--backlog 100000]

Rows:
- delete cost: a stream of `--messages` simulator events (S2, then uncompressed), then
  `--deletes` deletes of seqs drawn over the whole stream, one after the other, each timed:
  with erase (what ingest asks for: JetStream overwrites the message on disk) and with
  `no_erase` (the message is only marked deleted).
- backlog: ingest stopped while `--backlog` simulator events arrive (3% of them PMs), then
  started: seconds until its checkpoint reaches the stream's end (the counts are there), until
  no raw PM is left in the stream, and the deletes a second meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from typing import Any

import httpx
import nats
from nats.js import api
from userstats.sim.generator import Simulator

from bench.common import percentile, report, stack
from testbed.harness import connect, publish_all, raw_pms, settled, stored

STREAM = "PMDELETEBENCH"


async def delete_cost(
    url: str, events: list[tuple[str, bytes]], deletes: int, s2: bool
) -> list[dict[str, Any]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        compression = api.StoreCompression.S2 if s2 else api.StoreCompression.NONE
        await js.add_stream(api.StreamConfig(name=STREAM, subjects=["kryten.>"], compression=compression))
        for i, (subject, data) in enumerate(events):
            await nc.publish(subject, data)
            if i % 5000 == 0:
                await nc.flush()
        await nc.flush()
        await stored(nc, len(events), stream=STREAM)
        seqs = random.Random(7).sample(range(1, len(events) + 1), 2 * deletes)
        rows = []
        for label, no_erase, chosen in (("erase", False, seqs[:deletes]), ("no_erase", True, seqs[deletes:])):
            took: list[float] = []
            for seq in chosen:
                body = json.dumps({"seq": seq, "no_erase": no_erase}).encode()
                t = time.perf_counter()
                reply = await nc.request(f"$JS.API.STREAM.MSG.DELETE.{STREAM}", body, timeout=10)
                took.append((time.perf_counter() - t) * 1000)
                assert json.loads(reply.data).get("success"), reply.data
            rows.append(
                {
                    "row": f"delete, {label}, {'S2' if s2 else 'uncompressed'}",
                    "n": len(took),
                    "mean ms": sum(took) / len(took),
                    "p50 ms": percentile(took, 50),
                    "p99 ms": percentile(took, 99),
                }
            )
        await js.delete_stream(STREAM)
        return rows
    finally:
        await nc.close()


async def backlog(events: int) -> dict[str, Any]:
    with stack() as s:
        ingest = s.ingest()
        ingest.wait_healthy()
        ingest.stop()  # down while the backlog arrives
        nc = await connect(s.nats.url)
        try:
            last = await publish_all(nc, Simulator(seed=3).events(events))
            pms = await raw_pms(nc)
            started = time.monotonic()
            ingest = s.ingest()
            caught = 0.0
            while True:
                left = await raw_pms(nc)
                with contextlib.suppress(httpx.HTTPError, ValueError):  # still starting
                    code, body = ingest.health()
                    if not caught and code == 200 and int(body.get("checkpoint_seq") or 0) >= last:
                        caught = time.monotonic() - started
                if left == 0:
                    break
                if time.monotonic() - started > 1800:
                    raise SystemExit(f"{left} raw PMs still in the stream after 30 minutes")
                await asyncio.sleep(0.2)
            drained = time.monotonic() - started
            await settled(nc, ingest)
            caught = caught or drained
        finally:
            await nc.close()
    return {
        "row": f"backlog of {events:,} events",
        "n": pms,
        "caught up s": caught,
        "last PM deleted s": drained,
        "deletes/s": pms / drained,
    }


async def run(args: argparse.Namespace) -> None:
    events = list(Simulator(seed=11).events(args.messages))
    rows: list[dict[str, Any]] = []
    with stack() as s:
        for s2 in (True, False):
            rows += await delete_cost(s.nats.url, events, args.deletes, s2)
    rows.append(await backlog(args.backlog))
    report(
        "pm_deletes",
        rows,
        ["row", "n", "mean ms", "p50 ms", "p99 ms", "caught up s", "last PM deleted s", "deletes/s"],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000, help="messages in the stream deleted from")
    ap.add_argument("--deletes", type=int, default=300, help="deletes timed per row")
    ap.add_argument("--backlog", type=int, default=100_000, help="events that arrive while ingest is down")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
