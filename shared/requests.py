"""Decoding a request into (command, typed parameters); every failure is a RequestError."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import msgspec

from shared import messages as m

COMMAND_PARAMS: dict[str, type[m.Params]] = {
    "user.stats": m.UserParams,
    "user.profile": m.UserParams,
    "user.messages": m.UserMessagesParams,
    "user.activity": m.UserParams,
    "user.kudos": m.UserDomainParams,
    "stats.global": m.ChannelParams,
    "channel.top_users": m.TopUsersParams,
    "channel.population": m.PopulationParams,
    "channel.media_history": m.MediaHistoryParams,
    "channel.watermarks": m.WatermarksParams,
    "channel.movie_votes": m.MovieVotesParams,
    "channel.all_stats": m.AllStatsParams,
    "channel.list": m.ChannelListParams,
    "leaderboard.messages": m.LeaderboardMessagesParams,
    "leaderboard.kudos": m.LeaderboardParams,
    "leaderboard.emotes": m.LeaderboardParams,
    "leaderboard.all": m.LeaderboardAllParams,
    "timeseries.messages": m.TimeseriesParams,
    "timeseries.kudos": m.TimeseriesKudosParams,
    "system.ping": m.NoParams,
    "system.health": m.NoParams,
    "system.stats": m.NoParams,
    "alias.list": m.NoParams,
    "alias.get": m.AliasUserParams,
    "alias.add": m.AliasPairParams,
    "alias.delete": m.AliasPairParams,
    "alias.update": m.AliasUpdateParams,
    "alias.find": m.AliasFindParams,
}
WRITE_COMMANDS = frozenset({"alias.add", "alias.delete", "alias.update"})

# The seed's per-subject API: the 12 documented query types and the 4 extra ones.
SEED_COMMANDS = frozenset(
    {
        "user.stats",
        "user.messages",
        "user.activity",
        "user.kudos",
        "channel.top_users",
        "channel.population",
        "channel.media_history",
        "leaderboard.messages",
        "leaderboard.kudos",
        "leaderboard.emotes",
        "system.health",
        "system.stats",
        "channel.watermarks",
        "channel.movie_votes",
        "timeseries.messages",
        "timeseries.kudos",
    }
)

_MISSING = re.compile(r"Object missing required field `([^`]+)`")
_AT = re.compile(r"^(.*) - at `\$\.?(.*)`$")


class Request(NamedTuple):
    command: str
    params: m.Params
    min_seq: int | None
    raw: dict[str, Any]


def _explain(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    missing = _MISSING.search(text)
    if missing:
        path = _AT.match(text)
        prefix = f"{path.group(2)}." if path and path.group(2) else ""
        return f"{prefix}{missing.group(1)} required"
    at = _AT.match(text)
    if at:
        return f"invalid parameter {at.group(2)}: {at.group(1)}"
    return f"invalid parameters: {text}"


def decode_object(data: bytes, max_bytes: int, empty_ok: bool = False) -> dict[str, Any]:
    if len(data) > max_bytes:
        raise m.RequestError(f"Request too large: {len(data)} bytes (limit {max_bytes})")
    if not data.strip():
        if empty_ok:
            return {}
        raise m.RequestError("Invalid JSON: empty request")
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise m.RequestError(f"Invalid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec raises this for some invalid UTF-8 in strings
        raise m.RequestError(f"Invalid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not isinstance(obj, dict):
        raise m.RequestError(f"Invalid request: expected a JSON object, got {type(obj).__name__}")
    return obj


def parse(obj: dict[str, Any], command: str | None = None, domain: str | None = None) -> Request:
    """Validate the envelope and the command's parameters.

    `command`/`domain` come from the subject for the seed API and override the body.
    """
    service = obj.get("service")
    if service is not None and not isinstance(service, str):
        raise m.RequestError("Invalid 'service' field: expected a string")
    if service and service not in (m.SERVICE, "system"):  # "system": any service (as kryten-robot)
        raise m.RequestError(f"Command intended for '{service}', not '{m.SERVICE}'")
    if command is None:
        command = obj.get("command")
        if command is None or command == "":
            raise m.RequestError("Missing 'command' field")
        if not isinstance(command, str):
            raise m.RequestError("Invalid 'command' field: expected a string")
    params_type = COMMAND_PARAMS.get(command)
    if params_type is None:
        raise m.RequestError(f"Unknown command: {command}"[:300], command[:100])
    min_seq = obj.get("min_seq")
    if min_seq is not None and (not isinstance(min_seq, int) or isinstance(min_seq, bool) or min_seq < 0):
        raise m.RequestError("min_seq must be a non-negative integer", command)
    if domain is not None:
        obj = {**obj, "domain": domain}
    try:
        params = msgspec.convert(obj, params_type, strict=False)
    except msgspec.ValidationError as exc:
        raise m.RequestError(_explain(exc), command) from None
    for field in params.__struct_fields__:
        value = getattr(params, field)
        if isinstance(value, str) and not value.strip() and field in _required(params_type):
            raise m.RequestError(f"{field} required", command)
    return Request(command, params, min_seq, obj)


def _required(t: type[m.Params]) -> frozenset[str]:
    cached = _REQUIRED.get(t)
    if cached is None:
        info = msgspec.inspect.type_info(t)
        assert isinstance(info, msgspec.inspect.StructType)
        cached = frozenset(f.name for f in info.fields if f.required)
        _REQUIRED[t] = cached
    return cached


_REQUIRED: dict[type[m.Params], frozenset[str]] = {}


def seed_route(subject: str, prefix: str) -> tuple[str, str]:
    """(domain, query type) of cytube.query.userstats.<domain with dots>.<a>.<b>."""
    rest = subject[len(prefix) + 1 :]
    tokens = rest.split(".")
    if len(tokens) < 3:
        raise m.RequestError(f"Invalid subject {subject!r}: expected {prefix}.<domain>.<query_type>")
    return ".".join(tokens[:-2]), ".".join(tokens[-2:])
