"""Drive kryten-shell 0.1.4's own client class and views against a live userstats.

Runs in .venv/kryten-shell (`python -S`, see tests/reference/shell-requirements.txt), not in
the test's interpreter: kryten-shell needs kryten-py 0.9, kryten-cli 0.17. Usage:
`python -S tests/kryten_shell_driver.py <nats port> <channel> <user> <afk user> <kudos user>`.
Prints one JSON object: what each client method returned, and the text its views and
commands render from it (so a reply that a view cannot read fails here, not in a terminal).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from kryten_shell.client import KrytenClientWrapper
from kryten_shell.commands import builtins
from kryten_shell.config import NATSConfig, ShellConfig
from kryten_shell.views.users import UsersView


class App:
    """The parts of KrytenShellApp the client wrapper calls (the TUI itself is not started)."""

    _playlist_view = None
    _chat_view = None
    _kv_view = None

    def update_status(self, **_: Any) -> None:
        pass

    def log_event(self, *_: Any) -> None:
        pass


async def main(port: int, channel: str, user: str, afk_user: str, kudos_user: str) -> None:
    app: Any = App()
    client = KrytenClientWrapper(ShellConfig(nats=NATSConfig("127.0.0.1", port), channel=channel), app)
    if not await client.connect():
        raise SystemExit("kryten-shell could not connect")
    out: dict[str, Any] = {
        "get_user_stats": await client.get_user_stats(user),
        "get_channel_stats": await client.get_channel_stats(),
        "get_top_users": await client.get_top_users(limit=10),
        "get_leaderboards": await client.get_leaderboards(limit=10),
        "get_user_messages": await client.get_user_messages(user, limit=20),
        "get_user_activity": await client.get_user_activity(afk_user),
        "get_user_kudos": await client.get_user_kudos(kudos_user),
        "get_channel_population": await client.get_channel_population(),
        "get_media_history": await client.get_media_history(limit=20),
        "get_leaderboard_messages": await client.get_leaderboard_messages(limit=20),
        "get_leaderboard_kudos": await client.get_leaderboard_kudos(limit=20),
        "get_leaderboard_emotes": await client.get_leaderboard_emotes(limit=20),
        "get_userstats_health": await client.get_userstats_health(),
        "get_userstats_system_stats": await client.get_userstats_system_stats(),
        "ping_service": await client.ping_service("kryten.userstats.command"),
    }
    view: Any = UsersView.__new__(UsersView)  # its formatters only; no widget tree
    rendered = {
        "users_view_stats": view._format_user_stats(user, out["get_user_stats"] or {}),
        "users_view_leaderboards": view._format_leaderboards(out["get_channel_stats"] or {}),
    }
    commands = {
        "stats": (builtins.cmd_user_stats, {"username": user}),
        "leaderboard": (builtins.cmd_leaderboard, {}),
        "activity": (builtins.cmd_user_activity, {"username": afk_user}),
        "kudos": (builtins.cmd_user_kudos, {"username": kudos_user}),
        "messages": (builtins.cmd_user_messages, {"username": user}),
        "population": (builtins.cmd_population, {}),
        "history": (builtins.cmd_media_history, {}),
    }
    for name, (handler, args) in commands.items():
        result = await handler(app, client, args, [])
        rendered[f"command_{name}"] = result.message
    out["rendered"] = rendered
    await client.disconnect()
    print(json.dumps(out))


if __name__ == "__main__":
    port, channel, user, afk_user, kudos_user = sys.argv[1:6]
    asyncio.run(main(int(port), channel, user, afk_user, kudos_user))
