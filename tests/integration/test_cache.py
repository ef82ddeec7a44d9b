"""The reply cache: user.* replies survive writes that do not touch that user, and only those."""

from __future__ import annotations

from userstats.shared.subjects import DEFAULT_STREAM

from testbed.harness import Stack, caught_up, chat_envelope, connect, metric, request, stored

DOMAIN = "cytu.be"


def chat(user: str, text: str, i: int) -> tuple[str, bytes]:
    return chat_envelope(
        user, text, channel="lounge", domain=DOMAIN, time_us=1_765_000_000_000_000 + i * 1000
    )


async def test_user_replies_are_cached_until_that_user_changes(stack: Stack) -> None:
    ingest = stack.ingest()
    ingest.wait_healthy()
    replica = stack.query()
    nc = await connect(stack.nats.url)
    n = 0

    async def say(user: str, times: int) -> None:
        nonlocal n
        for _ in range(times):
            n += 1
            await nc.publish(*chat(user, f"line {n}", n))
        await nc.flush()
        await stored(nc, base + n)  # core publishes are stored asynchronously: all of them first
        await caught_up(nc, replica)  # ends with a min_seq read: the tables are written

    async def stats(user: str) -> dict[str, object]:
        reply: dict[str, object] = await request(
            nc, {"command": "user.stats", "username": user, "channel": "lounge", "domain": DOMAIN}
        )
        return reply

    try:
        replica.wait_healthy()
        base = int((await nc.jetstream().stream_info(DEFAULT_STREAM)).state.messages)
        await say("alice", 2)
        await say("bob", 1)
        first = await stats("alice")
        assert first["data"]["messages"] == 2  # type: ignore[index]
        hits = metric(replica.metrics(), "userstats_query_cache_hits_total") or 0

        await say("bob", 3)  # writes that do not touch alice
        again = await stats("alice")
        assert again == first  # the same reply, as of the same sequence
        assert (metric(replica.metrics(), "userstats_query_cache_hits_total") or 0) == hits + 1
        assert (await stats("bob"))["data"]["messages"] == 4  # type: ignore[index]

        await say("Alice", 1)  # another spelling of the same user: her rows changed
        fresh = await stats("ALICE")
        assert fresh["data"]["messages"] == 3  # type: ignore[index]
        assert int(fresh["as_of_seq"]) > int(first["as_of_seq"])  # type: ignore[call-overload]
        assert (await stats("alice"))["data"]["messages"] == 3  # type: ignore[index]

        # kudos from bob change alice's rows though she did not write anything
        before = await stats("alice")
        n += 1
        await nc.publish(*chat("bob", "thanks ++alice", n))
        await nc.flush()
        await stored(nc, base + n)
        await caught_up(nc, replica)
        after = await stats("alice")
        assert after["data"]["kudos_plusplus"] == before["data"]["kudos_plusplus"] + 1  # type: ignore[index]
    finally:
        await nc.close()
