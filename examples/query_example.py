"""Ask a running userstats (e.g. `make demo`) seven kinds of question with the typed client.

    .venv/bin/python examples/query_example.py [CHANNEL]

NATS_URL (default nats://127.0.0.1:4222) says where; the channel defaults to the
simulator's 420Grindhouse.
"""

from __future__ import annotations

import asyncio
import os
import sys

from userstats.client import UserstatsClient, UserstatsError


async def main(channel: str) -> None:
    url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    async with await UserstatsClient.connect(url, read_your_writes=True) as stats:
        s = await stats.system_stats()
        print(
            f"system: {s.total_users} users, {s.total_messages} messages, {s.total_pms} PMs, "
            f"{s.active_sessions} open sessions (as of seq {stats.last_seq})"
        )

        top = await stats.channel_top_users(channel, limit=5)
        print(f"\ntop users of {top.channel}:")
        for row in top.top_users:
            print(f"  {row.username:20} {row.count:6} messages")

        if top.top_users:
            user = await stats.user_stats(top.top_users[0].username, channel=channel)
            phrases = ", ".join(f"{p.phrase}x{p.count}" for p in user.kudos_phrases) or "none"
            print(
                f"\n{user.username}: {user.messages} messages here, {user.pms} PMs, "
                f"{user.kudos_plusplus} ++ kudos, phrase kudos: {phrases}"
            )

        kudos = await stats.leaderboard_kudos(limit=3)
        print(
            "\nkudos leaderboard:",
            ", ".join(f"{r.username} ({r.count})" for r in kudos.leaderboard) or "empty",
        )

        emotes = await stats.leaderboard_emotes(limit=3)
        print(
            "emote leaderboard:", ", ".join(f"#{r.emote} ({r.count})" for r in emotes.leaderboard) or "empty"
        )

        media = await stats.channel_media_history(channel, limit=3)
        print("\nrecently played:")
        for m in media.history:
            print(f"  {m.timestamp}  [{m.media_type}] {m.media_title}")

        series = await stats.timeseries_messages(channel)
        print(
            "\nmessages per hour:",
            ", ".join(f"{h.hour[11:16]}={h.messages}" for h in series.data[-6:]) or "none",
        )

        marks = await stats.channel_watermarks(channel)
        if marks.high and marks.low:
            print(
                f"population: high {marks.high.total_users} at {marks.high.timestamp}, "
                f"low {marks.low.total_users} at {marks.low.timestamp}"
            )

        try:
            await stats.user_stats("")
        except UserstatsError as exc:
            print(f"\nbad input gets a clear error: {exc.message!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "420Grindhouse"))
