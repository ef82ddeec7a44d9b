"""Typed settings: the sections of a kryten-userstats config.json, with their defaults and bounds.

shared/settings_load.py reads them (the file, `${VAR}` expansion, env overrides) and
validates them once at start-up.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from userstats.shared.subjects import DEFAULT_STREAM

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
AtLeastOne = Annotated[float, msgspec.Meta(ge=1)]
Replicas = Annotated[int, msgspec.Meta(ge=1, le=5)]  # JetStream allows 1 to 5


class Section(msgspec.Struct, kw_only=True, frozen=True):
    """A section of the settings (settings_load checks each one's keys)."""


class NatsSettings(Section, frozen=True):
    servers: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["nats://127.0.0.1:4222"]
    )
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None  # a .creds file (JWT + nkey seed)
    nkey_seed: str | None = None  # a file holding an nkey seed
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    connect_timeout: AtLeastOne = 10
    reconnect_time_wait: Positive = 2
    max_reconnect_attempts: int = -1
    ping_interval: AtLeastOne = 120
    startup_wait_seconds: Annotated[float, msgspec.Meta(ge=0)] = 30  # keep trying this long at start
    randomize: bool = True  # false: connect to the first reachable of `servers` in the listed order


class ChannelSettings(Section, frozen=True):
    domain: Annotated[str, msgspec.Meta(min_length=1)]
    channel: Annotated[str, msgspec.Meta(min_length=1)]


class ServiceSettings(Section, frozen=True):
    name: str = "userstats"
    enable_heartbeat: bool = True
    heartbeat_interval: Annotated[int, msgspec.Meta(ge=5, le=300)] = 30
    enable_discovery: bool = True


class DatabaseSettings(Section, frozen=True):
    path: str = "data/userstats.duckdb"


class MetricsSettings(Section, frozen=True):
    port: Port = 28282


class SnapshotSettings(Section, frozen=True):
    """`interval_seconds` is the population snapshot period in event time (spec 3.10)."""

    interval_seconds: Annotated[int, msgspec.Meta(ge=10, le=86400)] = 300


class KudosSettings(Section, frozen=True):
    default_phrases: list[str] = msgspec.field(default_factory=lambda: ["lol", "rofl", "haha"])


class UserstatsSettings(Section, frozen=True):
    """Settings kryten-userstats did not have (the `userstats` section of config.json)."""

    stream: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$")] = DEFAULT_STREAM
    stream_max_bytes: int = -1
    stream_max_msgs: int = -1
    stream_max_age_seconds: Annotated[float, msgspec.Meta(ge=0)] = 0
    # "projected": only the events the projection uses (shared.projection.CAPTURED_SUBJECTS);
    # "all": every bridge event, kryten.events.cytube.> (twice the messages, see README)
    stream_capture: Literal["projected", "all"] = "projected"
    count_shadow_muted: bool = False
    ingest_port: Port = 28283
    http_host: str = "0.0.0.0"
    web_pages: bool = True  # the replica's HTML pages (/, /channel/..., /user/...); the API stays
    snapshot_interval_seconds: Positive = 2.0
    snapshot_retention: Annotated[int, msgspec.Meta(ge=1)] = 3
    tick_interval_seconds: Positive = 30.0
    batch_max_events: Annotated[int, msgspec.Meta(ge=1)] = 20000
    batch_max_seconds: Positive = 0.5  # a batch stops taking events after this much work
    batch_linger_seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.1  # ...or this long after opening
    replica_dir: str = ""  # where replicas download snapshots; empty = a temp dir
    request_max_bytes: Annotated[int, msgspec.Meta(ge=256)] = 65536
    min_seq_timeout_seconds: Positive = 5.0
    min_seq_timeout_max_seconds: Positive = 30.0
    duckdb_threads: Annotated[int, msgspec.Meta(ge=1)] = 2
    # JetStream replication (shared/replication.py): `replicas` for the stream, the pointer KV
    # and the snapshot Object Store, unless one of the three is set; 3 on a NATS cluster.
    replicas: Replicas = 1
    stream_replicas: Replicas | None = None
    pointer_replicas: Replicas | None = None
    snapshot_replicas: Replicas | None = None
    placement_cluster: str | None = None  # JetStream placement of all three: a cluster name...
    placement_tags: list[str] = msgspec.field(default_factory=list)  # ...and/or server tags


class Settings(Section, frozen=True):
    service: ServiceSettings = msgspec.field(default_factory=ServiceSettings)
    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    channels: list[ChannelSettings] = msgspec.field(default_factory=list)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    snapshots: SnapshotSettings = msgspec.field(default_factory=SnapshotSettings)
    kudos: KudosSettings = msgspec.field(default_factory=KudosSettings)
    userstats: UserstatsSettings = msgspec.field(default_factory=UserstatsSettings)
    log_level: Annotated[str, msgspec.Meta(pattern=r"^(?i:DEBUG|INFO|WARNING|ERROR|CRITICAL)$")] = "INFO"

    @property
    def default_domain(self) -> str:
        """The first configured channel's domain supplies query defaults (spec 4.2)."""
        return self.channels[0].domain if self.channels else "cytu.be"

    @property
    def default_channel(self) -> str | None:
        return self.channels[0].channel if self.channels else None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def mask_url(url: str) -> str:
    """nats://user:pw@host -> nats://user:***@host; nats://token@host -> nats://***@host."""
    scheme, sep, rest = url.partition("://")
    auth, at, host = rest.rpartition("@")
    if not (sep and at):
        return url
    user, colon, _ = auth.partition(":")
    return f"{scheme}://{user}:***@{host}" if colon else f"{scheme}://***@{host}"


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as a dict with secrets masked, for --validate-config and logs."""
    data: dict[str, Any] = msgspec.to_builtins(settings)
    for key in ("password", "token"):
        if data["nats"].get(key):
            data["nats"][key] = "***"
    data["nats"]["servers"] = [mask_url(u) for u in data["nats"]["servers"]]
    return data
