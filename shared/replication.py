"""Replica count and placement of the three JetStream stores: declared, created, changed.

The stream, the pointer KV (a stream named KV_<bucket>) and the snapshot Object Store (a
stream named OBJ_<bucket>) each take a replica count and an optional placement. A store
that exists with other values is updated in place (JetStream scales R1 <-> R3 and moves
streams by itself); when the server refuses, the error names the setting and says why.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from nats.js import JetStreamContext, api
from nats.js.errors import APIError
from userstats.shared.settings import UserstatsSettings

log = logging.getLogger(__name__)

STORES = ("stream", "pointer", "snapshots")
SETTING = {
    "stream": "userstats.stream_replicas",
    "pointer": "userstats.pointer_replicas",
    "snapshots": "userstats.snapshot_replicas",
}


class ReplicationError(Exception):
    """A store cannot be created or changed as configured; the message says why and what to set."""


@dataclass(frozen=True)
class Replication:
    replicas: int = 1
    cluster: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def placement(self) -> api.Placement | None:
        """None when no placement is configured: the server places it, and an existing
        store keeps whatever placement it has."""
        if self.cluster is None and not self.tags:
            return None
        return api.Placement(cluster=self.cluster, tags=list(self.tags) or None)

    def describe(self) -> str:
        where = [f"cluster {self.cluster}"] if self.cluster else []
        where += [f"tags {','.join(self.tags)}"] if self.tags else []
        return f"R{self.replicas}" + (f" placed by {' and '.join(where)}" if where else "")


def for_store(u: UserstatsSettings, store: str) -> Replication:
    """The configured replication of "stream", "pointer" or "snapshots"."""
    own = {"stream": u.stream_replicas, "pointer": u.pointer_replicas, "snapshots": u.snapshot_replicas}
    count = own[store]
    return Replication(
        replicas=u.replicas if count is None else count,
        cluster=u.placement_cluster or None,
        tags=tuple(u.placement_tags),
    )


def _placement_key(p: api.Placement | None) -> tuple[str | None, tuple[str, ...]]:
    if p is None:
        return None, ()
    return p.cluster or None, tuple(sorted(p.tags or []))


def differs(config: api.StreamConfig, want: Replication) -> bool:
    """Whether an existing store's replicas (or, when configured, its placement) differ."""
    if int(config.num_replicas or 1) != want.replicas:
        return True
    return want.placement is not None and _placement_key(config.placement) != _placement_key(want.placement)


def with_replication(config: api.StreamConfig, want: Replication) -> api.StreamConfig:
    """`config` with our replicas, and our placement if one is configured."""
    placement = want.placement if want.placement is not None else config.placement
    return dataclasses.replace(config, num_replicas=want.replicas, placement=placement)


def explain(exc: APIError, what: str, store: str, want: Replication, have: int | None = None) -> str:
    """A refusal from the server as a message that names the setting and the way out."""
    setting = SETTING[store]
    change = f"from R{have} to {want.describe()}" if have is not None else f"as {want.describe()}"
    reason = exc.description or str(exc)
    hint = ""
    if exc.err_code == 10074:  # replicas > 1 not supported in non-clustered mode
        hint = (
            f"; this NATS server is not part of a cluster: set {setting} (or userstats.replicas) to 1, "
            "or list the cluster's servers in nats.servers"
        )
    elif exc.err_code == 10005:  # no suitable peers for placement
        hint = (
            f"; the cluster has fewer JetStream servers than {want.replicas}"
            + (" matching userstats.placement_cluster / placement_tags" if want.placement else "")
            + f": lower {setting} (or userstats.replicas) or add servers"
        )
    elif exc.err_code == 10124:  # stream move already in progress
        hint = "; an earlier change is still being carried out: start again once it is done"
    elif exc.err_code == 10052:  # can not change storage type
        hint = "; it was created with another storage type: copy it to a new stream, or remove it"
    return f"cannot {'change' if have is not None else 'create'} {what} {change}: {reason}{hint}"


async def apply(
    js: JetStreamContext, info: api.StreamInfo, want: Replication, what: str, store: str
) -> api.StreamInfo:
    """Bring an existing store to the configured replication (a no-op when it has it)."""
    have = info.config
    if not differs(have, want):
        return info
    try:
        updated = await js.update_stream(with_replication(have, want))
    except APIError as exc:
        raise ReplicationError(explain(exc, what, store, want, int(have.num_replicas or 1))) from exc
    log.info("%s changed from R%d to %s", what, int(have.num_replicas or 1), want.describe())
    return updated
