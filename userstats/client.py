"""A small typed async client for userstats (and kryten-userstats 0.7.1) over NATS.

    async with await UserstatsClient.connect("nats://127.0.0.1:4222") as stats:
        top = await stats.channel_top_users("420Grindhouse", limit=5)
        for row in top.top_users:
            print(row.username, row.count)

Every method sends one command of the API and returns its `data` decoded into the Struct
of `shared.replies`. The methods are generated from the command table (shared/commands.py)
by `python -m userstats.clientgen` into userstats/client_methods.py. Errors:

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

from userstats.client_methods import CommandMethods
from userstats.shared import natsconn
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


class UserstatsClient(CommandMethods):
    """One method per command (spec 4.2), generated from shared/commands.py into
    userstats/client_methods.py; `request` sends any command."""

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
