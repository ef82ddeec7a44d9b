"""Decoding a request into (command, typed parameters); every failure is a RequestError.

Each command has one decoder, built from its declaration in shared/commands.py: the request's
object is converted into the command's parameter Struct by one `msgspec.convert`. When that
fails, the error reply names the first field msgspec rejected (request order, then the missing
required fields in declaration order), found from the declared field types, not from the text of
msgspec's error.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any, NamedTuple

import msgspec
from msgspec import inspect as mi
from userstats.shared import messages as m
from userstats.shared.commands import COMMAND_PARAMS, COMMANDS, SEED_COMMANDS, WRITE_COMMANDS, Command

__all__ = [
    "COMMAND_PARAMS",
    "DECODERS",
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


class Request(NamedTuple):
    command: str
    params: m.Params
    min_seq: int | None
    raw: dict[str, Any]


class Fields:
    """The fields of a parameter Struct (or of a Struct one level down, such as
    channel.all_stats' `limits`): names in declaration order, types, required ones."""

    def __init__(self, struct: type[msgspec.Struct]) -> None:
        info = mi.type_info(struct)
        assert isinstance(info, mi.StructType)
        self.names: tuple[str, ...] = tuple(f.name for f in info.fields)
        self.known = frozenset(self.names)
        # in declaration order: an error names the first one missing or empty
        self.required = tuple(f.name for f in info.fields if f.required)
        self.types: dict[str, Any] = typing.get_type_hints(struct, include_extras=True)
        self.nested = {f.name: Fields(f.type.cls) for f in info.fields if isinstance(f.type, mi.StructType)}

    def unknown(
        self, obj: dict[str, Any], allowed: frozenset[str], takes: str, prefix: str = ""
    ) -> str | None:
        """The error for keys that are no field (nor `allowed`), down one Struct level."""
        bad = [k for k in obj if k not in self.known and k not in allowed]
        if bad:
            return _unknown_message(bad, self.names, takes, prefix)
        for name, sub in self.nested.items():
            value = obj.get(name)
            if isinstance(value, dict):
                problem = sub.unknown(value, frozenset(), f"{name} takes", prefix=f"{prefix}{name}.")
                if problem:
                    return problem
        return None

    def explain(self, obj: dict[str, Any], prefix: str = "") -> str | None:
        """Why `obj` does not convert: the first field, in the order msgspec checks them."""
        for key, value in obj.items():
            if key not in self.known:
                continue
            t = self.types[key]
            sub = self.nested.get(key)
            if sub is not None and isinstance(value, dict):
                problem = sub.explain(value, f"{prefix}{key}.")
                if problem:
                    return problem
                continue
            try:
                msgspec.convert(value, t, strict=False)
            except msgspec.ValidationError as exc:
                return f"invalid parameter {prefix}{key}: {exc}"
        missing = [name for name in self.required if name not in obj]
        return f"{prefix}{missing[0]} required" if missing else None


class ParamsDecoder:
    """One command's parameters, from the request's object."""

    def __init__(self, command: Command) -> None:
        self.command = command.name
        self.type = command.params
        self.fields = Fields(command.params)
        self.takes_domain = "domain" in self.fields.known

    def decode(self, obj: dict[str, Any]) -> m.Params:
        problem = self.fields.unknown(obj, ENVELOPE_KEYS, f"{self.command} takes")
        if problem:
            raise m.RequestError(problem, self.command)
        try:
            params = msgspec.convert(obj, self.type, strict=False)
        except msgspec.ValidationError as exc:
            raise m.RequestError(
                self.fields.explain(obj) or f"invalid parameters: {exc}", self.command
            ) from None
        for name in self.fields.required:
            value = getattr(params, name)
            if isinstance(value, str) and not value.strip():
                raise m.RequestError(f"{name} required", self.command)
        return params


DECODERS: dict[str, ParamsDecoder] = {c.name: ParamsDecoder(c) for c in COMMANDS}


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
    decoder = DECODERS.get(command)
    if decoder is None:
        raise m.RequestError(f"Unknown command: {command}"[:300], command[:100])
    min_seq = obj.get("min_seq")
    if min_seq is not None and (not isinstance(min_seq, int) or isinstance(min_seq, bool) or min_seq < 0):
        raise m.RequestError("min_seq must be a non-negative integer", command)
    if domain is not None and decoder.takes_domain:
        obj = {**obj, "domain": domain}
    return Request(command, decoder.decode(obj), min_seq, obj)


def _unknown_message(unknown: list[str], known: tuple[str, ...], takes: str, prefix: str = "") -> str:
    parts = []
    for key in unknown[:5]:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        parts.append(f"'{prefix}{key}'" + (f" (did you mean '{prefix}{close[0]}'?)" if close else ""))
    what = "parameter" if len(unknown) == 1 else "parameters"
    return f"unknown {what} {', '.join(parts)}; {takes}: {', '.join(known) or 'no parameters'}"[:500]


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
