"""Decoding a request into (command, typed parameters); every failure is a RequestError."""

from __future__ import annotations

import difflib
import re
from typing import Any, NamedTuple

import msgspec
from userstats.shared import messages as m
from userstats.shared.commands import COMMAND_PARAMS, SEED_COMMANDS, WRITE_COMMANDS

# What each command takes, is and answers is declared once, in shared/commands.py.

__all__ = [
    "COMMAND_PARAMS",
    "SEED_COMMANDS",
    "WRITE_COMMANDS",
    "Request",
    "decode_object",
    "parse",
    "seed_route",
]

# Keys any request may carry besides its command's parameters: the envelope (spec 4.2),
# read-your-writes, tracing ids some clients add, and `domain`, which every seed subject
# carries and a client may send with any command (ignored by those without one).
ENVELOPE_KEYS = frozenset(
    {"command", "service", "min_seq", "timeout", "request_id", "correlation_id", "domain"}
)
# Parameters ecosystem clients send that a command does not take; accepted and ignored as
# 0.7.1 did. kryten-shell 0.1.4 sends `limit` with user.messages.
TOLERATED_KEYS: dict[str, frozenset[str]] = {"user.messages": frozenset({"limit"})}

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
    if domain is not None and "domain" in params_type.__struct_fields__:
        obj = {**obj, "domain": domain}
    _reject_unknown(obj, command, params_type)
    try:
        params = msgspec.convert(obj, params_type, strict=False)
    except msgspec.ValidationError as exc:
        raise m.RequestError(_explain(exc), command) from None
    for field in params.__struct_fields__:
        value = getattr(params, field)
        if isinstance(value, str) and not value.strip() and field in _required(params_type):
            raise m.RequestError(f"{field} required", command)
    return Request(command, params, min_seq, obj)


def _reject_unknown(obj: dict[str, Any], command: str, params_type: type[m.Params]) -> None:
    """A misspelt or foreign parameter is an error naming the ones the command takes."""
    fields = params_type.__struct_fields__
    unknown = [k for k in obj if k not in fields and k not in ENVELOPE_KEYS]
    unknown = [k for k in unknown if k not in TOLERATED_KEYS.get(command, ())]
    if unknown:
        raise m.RequestError(_unknown_message(unknown, fields, f"{command} takes"), command)
    for (owner, name), sub in _NESTED.items():  # one level down: channel.all_stats' limits
        value = obj.get(name)
        if owner is params_type and isinstance(value, dict):
            bad = [k for k in value if k not in sub.__struct_fields__]
            if bad:
                msg = _unknown_message(bad, sub.__struct_fields__, f"{name} takes", prefix=f"{name}.")
                raise m.RequestError(msg, command)


def _unknown_message(unknown: list[str], known: tuple[str, ...], takes: str, prefix: str = "") -> str:
    parts = []
    for key in unknown[:5]:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        parts.append(f"'{prefix}{key}'" + (f" (did you mean '{prefix}{close[0]}'?)" if close else ""))
    what = "parameter" if len(unknown) == 1 else "parameters"
    return f"unknown {what} {', '.join(parts)}; {takes}: {', '.join(known) or 'no parameters'}"[:500]


_NESTED: dict[tuple[type[m.Params], str], type[m.AllStatsLimits]] = {
    (m.AllStatsParams, "limits"): m.AllStatsLimits,
}


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
    """(domain, query type) of cytube.query.userstats.<domain with dots>.<a>.<b>.

    The domain has dots of its own, so the subject must end in a known query type."""
    rest = subject[len(prefix) + 1 :]
    for query_type in SEED_COMMANDS:
        if rest.endswith("." + query_type) and len(rest) > len(query_type) + 1:
            return rest[: -len(query_type) - 1], query_type
    raise m.RequestError(
        f"Unknown query type in subject {subject!r}: expected {prefix}.<domain>.<query_type>, "
        f"query_type one of {', '.join(sorted(SEED_COMMANDS))}"[:600]
    )
