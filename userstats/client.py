"""A small typed async client for userstats (and kryten-userstats 0.7.1) over NATS.

    async with await UserstatsClient.connect("nats://127.0.0.1:4222") as stats:
        top = await stats.channel_top_users("420Grindhouse", limit=5)
        for row in top.top_users:
            print(row.username, row.count)

Every method sends one command of the API and returns its `data` decoded into the Struct
of `shared.replies`. Errors:

    UserstatsError        the service answered with success=false (.command, .message)
    ├── NotReadyError     the replica has no tables yet, or min_seq was not reached in time
    UserstatsTimeout      no reply within the timeout (also a TimeoutError)
    UserstatsUnavailable  NATS cannot be reached (connect), or nobody listens on the subject

`read_your_writes=True` sends, with every request, the highest `as_of_seq` seen so far as
`min_seq`, so a read after a write (alias.add...) always sees it, whichever replica answers.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from userstats.shared import messages as m
from userstats.shared import natsconn
from userstats.shared import replies as r
from userstats.shared.commands import REPLY_TYPES
from userstats.shared.subjects import COMMAND_SUBJECT

T = TypeVar("T")


class UserstatsError(Exception):
    def __init__(self, command: str | None, message: str, as_of_seq: int = 0) -> None:
        super().__init__(f"{command}: {message}" if command else message)
        self.command, self.message, self.as_of_seq = command, message, as_of_seq


class NotReadyError(UserstatsError):
    pass


class UserstatsTimeout(UserstatsError, TimeoutError):
    pass


class UserstatsUnavailable(UserstatsError):
    pass


class _Envelope(msgspec.Struct, frozen=True):
    service: str
    success: bool
    command: str | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")
    error: str | None = None
    as_of_seq: int = 0
    note: str | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {c: msgspec.json.Decoder(t) for c, t in REPLY_TYPES.items()}


class UserstatsClient:
    def __init__(
        self, nc: Client, timeout: float = 5.0, read_your_writes: bool = False, subject: str = COMMAND_SUBJECT
    ) -> None:
        self._nc = nc
        self._owns = False
        self.timeout = timeout
        self.read_your_writes = read_your_writes
        self.subject = subject
        self.last_seq = 0  # the newest as_of_seq any reply carried
        self.last_note: str | None = None  # the last reply's note (e.g. channel on another domain)

    @classmethod
    async def connect(
        cls,
        servers: str | list[str] = "nats://127.0.0.1:4222",
        *,
        connect_timeout: float = 5.0,
        **options: Any,
    ) -> UserstatsClient:
        """Open a NATS connection of its own (closed by close() / async with).

        Tries each server once, each for at most `connect_timeout` s, and raises
        UserstatsUnavailable if none answers. `timeout`, `read_your_writes` and `subject`
        go to the client; any other keyword to nats-py's connect (user, password, tls, ...).
        Once connected, nats-py reconnects by itself; its errors are logged as warnings.
        """
        client_options = {
            k: options.pop(k) for k in ("timeout", "read_your_writes", "subject") if k in options
        }
        on_error = options.pop("error_cb", None)
        opts = {
            "servers": [servers] if isinstance(servers, str) else list(servers),
            "name": "userstats-client",
            "connect_timeout": connect_timeout,
            **options,
        }
        try:
            nc = await natsconn.open_connection(opts, wait=0, on_error=on_error)
        except natsconn.ConnectError as exc:
            raise UserstatsUnavailable(None, str(exc)) from None
        client = cls(nc, **client_options)
        client._owns = True
        return client

    async def close(self) -> None:
        if self._owns:
            await self._nc.close()

    async def __aenter__(self) -> UserstatsClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def request(
        self, command: str, *, min_seq: int | None = None, timeout: float | None = None, **params: Any
    ) -> Any:
        """Send any command; returns its decoded `data`."""
        body: dict[str, Any] = {"command": command, **{k: v for k, v in params.items() if v is not None}}
        if min_seq is None and self.read_your_writes and self.last_seq:
            min_seq = self.last_seq
        wait = self.timeout if timeout is None else timeout
        if min_seq is not None:
            body["min_seq"] = min_seq
            body.setdefault("timeout", wait)
        try:
            msg = await self._nc.request(self.subject, msgspec.json.encode(body), timeout=wait + 1)
        except NoRespondersError:
            raise UserstatsUnavailable(command, f"no userstats replica listens on {self.subject}") from None
        except (NatsTimeoutError, TimeoutError):
            raise UserstatsTimeout(command, f"no reply within {wait + 1:g} s") from None
        env = _ENVELOPE.decode(msg.data)
        self.last_seq = max(self.last_seq, env.as_of_seq)
        self.last_note = env.note
        if not env.success:
            error = env.error or "unknown error"
            kind = NotReadyError if error.startswith(("not ready", "Timed out")) else UserstatsError
            raise kind(env.command or command, error, env.as_of_seq)
        decoder = _DECODERS.get(command)
        return decoder.decode(env.data) if decoder else msgspec.json.decode(env.data)

    # --- one method per command (spec 4.2) -------------------------------------------------

    async def user_stats(
        self, username: str, channel: str | None = None, domain: str | None = None, min_seq: int | None = None
    ) -> r.UserStats:
        result: r.UserStats = await self.request(
            "user.stats", username=username, channel=channel, domain=domain, min_seq=min_seq
        )
        return result

    async def user_profile(
        self, username: str, channel: str | None = None, domain: str | None = None, min_seq: int | None = None
    ) -> r.UserProfile:
        result: r.UserProfile = await self.request(
            "user.profile", username=username, channel=channel, domain=domain, min_seq=min_seq
        )
        return result

    async def user_messages(
        self, username: str, channel: str | None = None, domain: str | None = None, min_seq: int | None = None
    ) -> r.UserMessages:
        result: r.UserMessages = await self.request(
            "user.messages", username=username, channel=channel, domain=domain, min_seq=min_seq
        )
        return result

    async def user_activity(
        self, username: str, channel: str | None = None, domain: str | None = None, min_seq: int | None = None
    ) -> r.UserActivity:
        result: r.UserActivity = await self.request(
            "user.activity", username=username, channel=channel, domain=domain, min_seq=min_seq
        )
        return result

    async def user_kudos(
        self, username: str, domain: str | None = None, min_seq: int | None = None
    ) -> r.UserKudos:
        result: r.UserKudos = await self.request(
            "user.kudos", username=username, domain=domain, min_seq=min_seq
        )
        return result

    async def stats_global(
        self, channel: str, domain: str | None = None, min_seq: int | None = None
    ) -> r.StatsGlobal:
        result: r.StatsGlobal = await self.request(
            "stats.global", channel=channel, domain=domain, min_seq=min_seq
        )
        return result

    async def channel_top_users(
        self, channel: str, domain: str | None = None, limit: int = 10, min_seq: int | None = None
    ) -> r.ChannelTopUsers:
        result: r.ChannelTopUsers = await self.request(
            "channel.top_users", channel=channel, domain=domain, limit=limit, min_seq=min_seq
        )
        return result

    async def channel_population(
        self, channel: str, domain: str | None = None, hours: float = 24, min_seq: int | None = None
    ) -> r.ChannelPopulation:
        result: r.ChannelPopulation = await self.request(
            "channel.population", channel=channel, domain=domain, hours=hours, min_seq=min_seq
        )
        return result

    async def channel_media_history(
        self, channel: str, domain: str | None = None, limit: int = 50, min_seq: int | None = None
    ) -> r.ChannelMediaHistory:
        result: r.ChannelMediaHistory = await self.request(
            "channel.media_history", channel=channel, domain=domain, limit=limit, min_seq=min_seq
        )
        return result

    async def channel_watermarks(
        self, channel: str, domain: str | None = None, days: float | None = None, min_seq: int | None = None
    ) -> r.Watermarks:
        result: r.Watermarks = await self.request(
            "channel.watermarks", channel=channel, domain=domain, days=days, min_seq=min_seq
        )
        return result

    async def channel_movie_votes(
        self,
        channel: str,
        domain: str | None = None,
        media_title: str | None = None,
        min_seq: int | None = None,
    ) -> list[m.VoteRow] | m.VoteSummary | None:
        result: list[m.VoteRow] | m.VoteSummary | None = await self.request(
            "channel.movie_votes", channel=channel, domain=domain, media_title=media_title, min_seq=min_seq
        )
        return result

    async def channel_all_stats(
        self,
        channel: str | None = None,
        domain: str | None = None,
        top_users: int = 20,
        media_history: int = 15,
        leaderboards: int = 10,
        min_seq: int | None = None,
    ) -> r.AllStats:
        limits = {"top_users": top_users, "media_history": media_history, "leaderboards": leaderboards}
        result: r.AllStats = await self.request(
            "channel.all_stats", channel=channel, domain=domain, limits=limits, min_seq=min_seq
        )
        return result

    async def leaderboard_messages(
        self,
        channel: str | None = None,
        domain: str | None = None,
        limit: int = 10,
        min_seq: int | None = None,
    ) -> r.MessagesLeaderboard:
        result: r.MessagesLeaderboard = await self.request(
            "leaderboard.messages", channel=channel, domain=domain, limit=limit, min_seq=min_seq
        )
        return result

    async def channel_list(self, domain: str | None = None, min_seq: int | None = None) -> r.ChannelList:
        """Every channel the stream has seen (of `domain` if given), busiest first."""
        result: r.ChannelList = await self.request("channel.list", domain=domain, min_seq=min_seq)
        return result

    async def leaderboard_all(
        self,
        channel: str | None = None,
        domain: str | None = None,
        limit: int = 10,
        min_seq: int | None = None,
    ) -> r.LeaderboardAll:
        """Messages, kudos and emotes leaderboards in one reply (kryten-shell's leaderboard.all)."""
        result: r.LeaderboardAll = await self.request(
            "leaderboard.all", channel=channel, domain=domain, limit=limit, min_seq=min_seq
        )
        return result

    async def leaderboard_kudos(
        self, domain: str | None = None, limit: int = 10, min_seq: int | None = None
    ) -> r.KudosLeaderboard:
        result: r.KudosLeaderboard = await self.request(
            "leaderboard.kudos", domain=domain, limit=limit, min_seq=min_seq
        )
        return result

    async def leaderboard_emotes(
        self, domain: str | None = None, limit: int = 10, min_seq: int | None = None
    ) -> r.EmotesLeaderboard:
        result: r.EmotesLeaderboard = await self.request(
            "leaderboard.emotes", domain=domain, limit=limit, min_seq=min_seq
        )
        return result

    async def timeseries_messages(
        self,
        channel: str,
        domain: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        min_seq: int | None = None,
    ) -> r.MessagesSeries:
        result: r.MessagesSeries = await self.request(
            "timeseries.messages",
            channel=channel,
            domain=domain,
            start_time=start_time,
            end_time=end_time,
            min_seq=min_seq,
        )
        return result

    async def timeseries_kudos(
        self,
        channel: str | None = None,
        domain: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
        min_seq: int | None = None,
    ) -> r.KudosSeries:
        result: r.KudosSeries = await self.request(
            "timeseries.kudos",
            channel=channel,
            domain=domain,
            start_time=start_time,
            end_time=end_time,
            min_seq=min_seq,
        )
        return result

    async def system_ping(self) -> r.Ping:
        result: r.Ping = await self.request("system.ping")
        return result

    async def system_health(self) -> r.Health:
        result: r.Health = await self.request("system.health")
        return result

    async def system_stats(self, min_seq: int | None = None) -> r.SystemStats:
        result: r.SystemStats = await self.request("system.stats", min_seq=min_seq)
        return result

    async def alias_list(self, min_seq: int | None = None) -> r.AliasList:
        result: r.AliasList = await self.request("alias.list", min_seq=min_seq)
        return result

    async def alias_get(self, username: str, min_seq: int | None = None) -> r.AliasGet:
        result: r.AliasGet = await self.request("alias.get", username=username, min_seq=min_seq)
        return result

    async def alias_find(self, alias: str, min_seq: int | None = None) -> r.AliasFound:
        result: r.AliasFound = await self.request("alias.find", alias=alias, min_seq=min_seq)
        return result

    async def alias_add(self, username: str, alias: str) -> r.AliasAdded:
        result: r.AliasAdded = await self.request("alias.add", username=username, alias=alias)
        return result

    async def alias_delete(self, username: str, alias: str) -> r.AliasDeleted:
        result: r.AliasDeleted = await self.request("alias.delete", username=username, alias=alias)
        return result

    async def alias_update(self, old_alias: str, new_alias: str) -> r.AliasUpdated:
        result: r.AliasUpdated = await self.request("alias.update", old_alias=old_alias, new_alias=new_alias)
        return result

    async def user_forget(self, username: str) -> r.UserForgotten:
        """Remove a user's statistics for good (README "Forgetting a user"): every row, in
        every channel, aliases included; the user is not counted again; their raw events
        are deleted from the stream in the background."""
        result: r.UserForgotten = await self.request("user.forget", username=username)
        return result
