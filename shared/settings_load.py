"""Reading the settings: a kryten-userstats config.json (optional), `${VAR}` expansion, env overrides.

Validated once at start-up; an invalid value raises ConfigError naming the key.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import msgspec
from userstats.shared.settings import Section, Settings

DEFAULT_CONFIG_PATHS = (Path("/etc/kryten/kryten-userstats/config.json"), Path("config.json"))


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


# Environment overrides: variable -> (path in the config, how to parse it).
ENV_OVERRIDES: dict[str, tuple[tuple[str, ...], str]] = {
    "NATS_URL": (("nats", "servers"), "list"),
    "NATS_USER": (("nats", "user"), "str"),
    "NATS_PASSWORD": (("nats", "password"), "str"),
    "NATS_TOKEN": (("nats", "token"), "str"),
    "NATS_CREDS": (("nats", "creds"), "str"),
    "NATS_NKEY_SEED": (("nats", "nkey_seed"), "str"),
    "NATS_TLS_CA": (("nats", "tls_ca"), "str"),
    "NATS_TLS_CERT": (("nats", "tls_cert"), "str"),
    "NATS_TLS_KEY": (("nats", "tls_key"), "str"),
    "NATS_STARTUP_WAIT": (("nats", "startup_wait_seconds"), "raw"),
    "NATS_RANDOMIZE": (("nats", "randomize"), "raw"),
    "USERSTATS_CHANNELS": (("channels",), "channels"),
    "USERSTATS_DB_PATH": (("database", "path"), "str"),
    "USERSTATS_METRICS_PORT": (("metrics", "port"), "raw"),
    "USERSTATS_INGEST_PORT": (("userstats", "ingest_port"), "raw"),
    "USERSTATS_HTTP_HOST": (("userstats", "http_host"), "str"),
    "USERSTATS_WEB_PAGES": (("userstats", "web_pages"), "raw"),
    "USERSTATS_REQUEST_MAX_BYTES": (("userstats", "request_max_bytes"), "raw"),
    "USERSTATS_STREAM": (("userstats", "stream"), "str"),
    "USERSTATS_SNAPSHOT_INTERVAL": (("userstats", "snapshot_interval_seconds"), "raw"),
    "USERSTATS_TICK_INTERVAL": (("userstats", "tick_interval_seconds"), "raw"),
    "USERSTATS_COUNT_SHADOW_MUTED": (("userstats", "count_shadow_muted"), "raw"),
    "USERSTATS_REPLICA_DIR": (("userstats", "replica_dir"), "str"),
    "USERSTATS_REPLICAS": (("userstats", "replicas"), "raw"),
    "USERSTATS_STREAM_REPLICAS": (("userstats", "stream_replicas"), "raw"),
    "USERSTATS_STREAM_MAX_AGE": (("userstats", "stream_max_age_seconds"), "raw"),
    "USERSTATS_STREAM_MAX_BYTES": (("userstats", "stream_max_bytes"), "raw"),
    "USERSTATS_STREAM_MAX_MSGS": (("userstats", "stream_max_msgs"), "raw"),
    "USERSTATS_STREAM_CAPTURE": (("userstats", "stream_capture"), "str"),
    "USERSTATS_POINTER_REPLICAS": (("userstats", "pointer_replicas"), "raw"),
    "USERSTATS_SNAPSHOT_REPLICAS": (("userstats", "snapshot_replicas"), "raw"),
    "USERSTATS_PLACEMENT_CLUSTER": (("userstats", "placement_cluster"), "str"),
    "USERSTATS_PLACEMENT_TAGS": (("userstats", "placement_tags"), "list"),
    "USERSTATS_LOG_LEVEL": (("log_level",), "str"),
}

# Keys kryten-userstats 0.7.1 reads or accepts (spec 6.1) that userstats has no use for:
# accepted and ignored, so a 0.7.1 config.json works as it is. Any other key is a mistake.
KRYTEN_ONLY_KEYS: dict[str, frozenset[str]] = {
    "$": frozenset(
        {"handler_timeout", "retry_attempts", "retry_delay", "max_concurrent_handlers", "chat_min_delay"}
        | {"chat_jitter"}
    ),
    "$.service": frozenset(
        {"version", "enable_lifecycle", "health_port", "metrics_port", "health_path", "metrics_path"}
    ),
    "$.metrics": frozenset({"health_path", "metrics_path"}),
}

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, path: str, env: dict[str, str]) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string of the parsed JSON."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"config key {path}: environment variable {name} is not set")

        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def _struct_fields(t: Any) -> dict[str, Any]:
    """Field name -> type of a settings Struct (for the unknown-key check)."""
    return {f.name: f.type for f in msgspec.structs.fields(t)}


def _section_type(t: Any) -> Any:
    """The Struct a value of type `t` holds, if any (a section, or a list of them)."""
    for arg in (t, *getattr(t, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, Section):
            return arg
    return None


def unknown_keys(raw: dict[str, Any], t: Any = None, path: str = "$") -> list[str]:
    """Every key neither userstats nor kryten-userstats 0.7.1 knows, with the close match.

    Keys starting with `_` or `$` (comments such as "_comment", "$schema") are allowed.
    """
    fields = _struct_fields(t or Settings)
    known = set(fields) | KRYTEN_ONLY_KEYS.get(path, frozenset())
    out: list[str] = []
    for key, value in raw.items():
        if key.startswith(("_", "$")):
            continue
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known here: {', '.join(sorted(known))})"
            out.append(f"{path}.{key}{hint}")
            continue
        section = _section_type(fields.get(key))
        if section is None:
            continue
        if isinstance(value, dict):
            out += unknown_keys(value, section, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out += unknown_keys(item, section, f"{path}.{key}[{i}]")
    return out


def _parse_env(name: str, raw: str, how: str) -> Any:
    if how == "str":
        return raw
    if how == "list":
        return [s.strip() for s in raw.split(",") if s.strip()]
    if how == "channels":
        out = []
        for item in (s.strip() for s in raw.split(",") if s.strip()):
            domain, sep, channel = item.partition("/")
            if not sep:
                raise ConfigError(f"{name}: expected domain/channel[,domain/channel...], got {item!r}")
            out.append({"domain": domain, "channel": channel})
        return out
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw  # let type validation name it


def find_config(explicit: str | None, env: dict[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get("USERSTATS_CONFIG"):
        return Path(env["USERSTATS_CONFIG"])
    for p in DEFAULT_CONFIG_PATHS:
        if p.is_file():
            return p
    return None


def load(path: Path | None, env: dict[str, str] | None = None) -> Settings:
    """Read, expand, override and validate. Raises ConfigError with the bad key."""
    env = dict(os.environ) if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(parsed, dict):
            raise ConfigError(f"{path}: the top level must be a JSON object")
        raw = _expand(parsed, "$", env)
        unknown = unknown_keys(raw)
        if unknown:
            raise ConfigError(
                f"unknown key{'s' if len(unknown) > 1 else ''} in {path}: " + "; ".join(unknown)
            )
    from_env: dict[str, str] = {}
    for name, (keys, how) in ENV_OVERRIDES.items():
        if name in env and env[name] != "":
            node = raw
            for k in keys[:-1]:
                child = node.get(k)
                if not isinstance(child, dict):
                    child = node[k] = {}
                node = child
            node[keys[-1]] = _parse_env(name, env[name], how)
            from_env["$." + ".".join(keys)] = name
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        for key, name in from_env.items():
            if key in msg:
                msg += f" (set by {name})"
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{where}: {msg}") from exc
