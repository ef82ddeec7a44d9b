"""The HTTP API's OpenAPI 3.1 document, derived from the command table and the Structs.

Parameters and reply schemas come from each command's declaration (shared/commands.py),
both through msgspec's JSON Schema, so the document cannot drift from what the dispatcher
accepts and answers. `/docs` renders it as a plain HTML page (no CDN, no script: a replica
may have no internet) with a form per command; `/openapi.json` serves it for tools.
"""

from __future__ import annotations

from typing import Any

import jinja2
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from userstats.query.api import CORS, LIVE_COMMANDS, PREFIX, READ_COMMANDS
from userstats.shared import __version__
from userstats.shared import messages as m
from userstats.shared.commands import BY_NAME

REF = "#/components/schemas/{name}"

SUMMARIES = {
    "user.stats": "Everything about one user: messages per channel, PMs, kudos, emotes, time, aliases",
    "user.profile": "One user's figures in the profile shape (kudos grouped)",
    "user.messages": "One user's chat lines, in one channel or per channel",
    "user.activity": "One user's time in channels (total and not AFK)",
    "user.kudos": "Kudos one user received (++ and phrases)",
    "stats.global": "A channel's top users, watermarks and 24-hour population",
    "channel.top_users": "A channel's top chatters",
    "channel.population": "A channel's population snapshots over the last `hours`",
    "channel.media_history": "What a channel played, newest first",
    "channel.watermarks": "A channel's highest and lowest population (all time, or the last `days`)",
    "channel.movie_votes": "Votes on what a channel played (one title with `media_title`)",
    "channel.all_stats": "A channel's dashboard in one reply (what kryten-cli shows)",
    "channel.list": "Every channel the stream has seen, busiest first, with its current population",
    "leaderboard.messages": "Top chatters of a channel, or of every channel of the domain",
    "leaderboard.kudos": "Users with the most kudos in the domain",
    "leaderboard.emotes": "Most used emotes in the domain",
    "leaderboard.all": "The three leaderboards in one reply (kryten-shell)",
    "timeseries.messages": "Chat lines and average active users per hour",
    "timeseries.kudos": "Kudos per hour",
    "system.ping": "Liveness of the replica that answers",
    "system.health": "Health of the replica that answers",
    "system.stats": "Totals over everything the replica holds",
    "alias.list": "Every user's aliases",
    "alias.get": "One user's aliases",
    "alias.find": "Who owns an alias",
}
ENVELOPE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "min_seq",
        "in": "query",
        "required": False,
        "description": "Wait until this replica has applied this stream sequence (read-your-writes)",
        "schema": {"type": "integer", "minimum": 0},
    },
    {
        "name": "timeout",
        "in": "query",
        "required": False,
        "description": "Seconds to wait for min_seq (default 5, at most 30)",
        "schema": {"type": "number", "exclusiveMinimum": 0},
    },
]


# What a parameter means wherever it appears (the Structs give its type and default).
MEANINGS = {
    "domain": "Default: the first configured channel's domain, else the busiest one in the stream",
    "limit": "At most 1000 (a negative limit means 1000)",
    "channel": "Any case; the reply has the stored spelling",
    "username": "Any case; the reply has the stored spelling",
}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: `X | None` becomes `X`."""
    options = schema.get("anyOf")
    if options:
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == 1:
            return {**rest[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
    return schema


def _parameters(params: type[m.Params], components: dict[str, Any]) -> list[dict[str, Any]]:
    own = components[params.__name__]
    required = set(own.get("required", []))
    out = []
    for name, schema in own["properties"].items():
        ref = schema.get("$ref")
        if ref:  # a nested Struct (channel.all_stats' limits): one parameter per field
            nested = components[ref.rsplit("/", 1)[1]]
            for sub, sub_schema in nested["properties"].items():
                out.append({"name": f"{name}.{sub}", "in": "query", "required": False, "schema": sub_schema})
            continue
        out.append(
            {"name": name, "in": "query", "required": name in required, "schema": _without_null(schema)}
        )
    return out


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["service", "command", "success", "data", "as_of_seq"],
        "properties": {
            "service": {"const": m.SERVICE},
            "command": {"type": "string"},
            "success": {"const": True},
            "data": data,
            "as_of_seq": {"type": "integer", "description": "The stream sequence the answer reflects"},
        },
    }


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(name="Error")}}},
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every read command."""
    params = [BY_NAME[c].params for c in READ_COMMANDS]
    replies = [BY_NAME[c].reply for c in READ_COMMANDS]
    schemas, components = msgspec.json.schema_components([*params, *replies], ref_template=REF)
    reply_schemas = schemas[len(params) :]
    paths: dict[str, Any] = {}
    for command, params_type, reply in zip(READ_COMMANDS, params, reply_schemas, strict=True):
        ok: dict[str, Any] = {
            "description": "The reply envelope, as on NATS",
            "content": {"application/json": {"schema": _envelope(reply)}},
        }
        if command not in LIVE_COMMANDS:
            ok["headers"] = {"ETag": {"schema": {"type": "string"}, "description": "From `as_of_seq`"}}
        responses: dict[str, Any] = {"200": ok}
        if command not in LIVE_COMMANDS:
            responses["304"] = {"description": "Unchanged since the `If-None-Match` ETag"}
        responses["400"] = _error("Bad parameters (the NATS error message)")
        responses["503"] = _error("Not ready, or `min_seq` not reached within `timeout`")
        paths[f"{PREFIX}/{command}"] = {
            "get": {
                "operationId": command.replace(".", "_"),
                "summary": SUMMARIES.get(command, command),
                "tags": [command.split(".")[0]],
                "parameters": _parameters(params_type, components) + ENVELOPE_PARAMETERS,
                "responses": responses,
            }
        }
    for name in [p.__name__ for p in params]:
        components.pop(name, None)  # described as parameters; AllStatsLimits stays harmless
    components["Error"] = {
        "type": "object",
        "required": ["service", "success", "error", "as_of_seq"],
        "properties": {
            "service": {"const": m.SERVICE},
            "command": {"type": "string", "description": "Absent when no command could be read"},
            "success": {"const": False},
            "error": {"type": "string"},
            "as_of_seq": {"type": "integer"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "userstats HTTP API",
            "version": __version__,
            "description": "The read commands of the userstats NATS API (kryten.userstats.command) over "
            "HTTP GET, with the same parameters, validation, errors and reply envelope. Writes "
            "(alias.add, alias.delete, alias.update, user.forget) are NATS only.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }


def type_text(schema: dict[str, Any]) -> str:
    """A short human name for a JSON Schema: `string`, `array of TopRow`, `ActivityRow or null`."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[1]
    if "anyOf" in schema:
        return " or ".join(type_text(s) for s in schema["anyOf"])
    if "const" in schema:
        return msgspec.json.encode(schema["const"]).decode()
    kind = schema.get("type", "any")
    if kind == "array":
        return "array of " + type_text(schema.get("items", {}))
    if kind == "object" and "additionalProperties" in schema:
        return "object of " + type_text(schema["additionalProperties"])
    bounds = [
        template.format(schema[key])
        for key, template in (
            ("minimum", "≥ {}"),
            ("exclusiveMinimum", "> {}"),
            ("maximum", "≤ {}"),
            ("maxLength", "at most {} characters"),
        )
        if key in schema
    ]
    return str(kind) + (f" ({', '.join(bounds)})" if bounds else "")


class Docs:
    """`/docs` (the document as HTML, rendered once) and `/openapi.json`."""

    def __init__(self, env: jinja2.Environment, headers: dict[str, str]) -> None:
        doc = document()
        self._json = msgspec.json.encode(doc)
        self._html = env.get_template("docs.html").render(etag="", **_view(doc)).encode()
        self._headers = {**headers, "Cache-Control": "no-cache"}

    def routes(self) -> list[Route]:
        return [
            Route("/docs", self._docs, methods=["GET", "HEAD"]),
            Route("/openapi.json", self._openapi, methods=["GET", "HEAD"]),
        ]

    async def _docs(self, request: Request) -> Response:
        return Response(self._html, 200, self._headers, "text/html; charset=utf-8")

    async def _openapi(self, request: Request) -> Response:
        return Response(self._json, 200, {**self._headers, **CORS}, "application/json")


def _view(doc: dict[str, Any]) -> dict[str, Any]:
    """What docs.html shows: each operation with its parameters, and each reply type."""
    operations = []
    for path, item in doc["paths"].items():
        op = item["get"]
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["data"]
        params = [
            {
                "name": p["name"],
                "type": type_text(p["schema"]),
                "required": p["required"],
                "default": ""
                if "default" not in p["schema"]
                else msgspec.json.encode(p["schema"]["default"]).decode(),
                "description": p.get("description", ""),
            }
            for p in op["parameters"]
        ]
        operations.append(
            {
                "path": path,
                "command": path.rsplit("/", 1)[1],
                "summary": op["summary"],
                "params": params,
                "reply": type_text(ok),
                "reply_ref": str(ok.get("$ref", "")).rsplit("/", 1)[-1],
            }
        )
    types = [
        {
            "name": name,
            "fields": [
                {"name": f, "type": type_text(s), "required": f in schema.get("required", [])}
                for f, s in schema.get("properties", {}).items()
            ],
        }
        for name, schema in sorted(doc["components"]["schemas"].items())
    ]
    return {"info": doc["info"], "operations": operations, "types": types}
