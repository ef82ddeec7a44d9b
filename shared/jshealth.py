"""Can each JetStream store userstats needs be reached, and does it have a leader with quorum?

Both services probe the stream, the pointer KV and the snapshot Object Store about once a
second and report what they saw in /health and in their metrics. A store that does not
answer, answers without a leader, or whose leader has not heard from enough peers to commit
is a problem: /health answers 503 and names it. A store with quorum but fewer current
replicas than configured (one node of three down) still works: /health says "degraded".

Why these signals: on a cluster only the stream's leader subscribes to the captured
subjects, so without a leader the bridge's core publishes are not stored; and a leader
without quorum keeps claiming leadership for about 20 s while it can commit nothing
(measured with nats-server 2.15: its peers stay "current" for ~10 s after they die, but
their `active` age grows from the moment they are gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError
from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBE_TIMEOUT = 2.0  # a stream leader answers stream info in milliseconds
PEER_SILENT_SECONDS = 3.0  # leaders hear from healthy peers at least once a second


@dataclass(frozen=True)
class StoreState:
    store: str  # "stream", "pointer" or "snapshots"
    name: str  # the JetStream stream behind it (USERSTATS, KV_..., OBJ_...)
    ok: bool
    problem: str | None = None  # why it cannot be used, or why it is degraded (ok and a problem)
    leader: str | None = None
    replicas: int = 0  # configured
    current: int = 0  # the leader plus the peers it hears from that are up to date
    last_seq: int | None = None
    checked_at: float = 0.0  # time.time() of the probe
    missing: bool = False  # the server says the store does not exist (yet: ingest creates it)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "problem": self.problem,
            "leader": self.leader,
            "replicas": self.replicas,
            "current": self.current,
        }


LABEL = {"stream": "stream", "pointer": "KV bucket", "snapshots": "Object Store"}


def what(store: str, name: str) -> str:
    """`stream USERSTATS`, `KV bucket userstats_pointer`, `Object Store userstats_snapshots`."""
    return f"{LABEL[store]} {name.removeprefix('KV_').removeprefix('OBJ_')}"


def assess(store: str, name: str, info: api.StreamInfo, now: float) -> StoreState:
    """What a stream info answer, received at `now` (epoch seconds), says about the store."""
    replicas = int(info.config.num_replicas or 1)
    cluster = info.cluster
    last_seq = int(info.state.last_seq) if info.state else None
    base = {"store": store, "name": name, "replicas": replicas, "last_seq": last_seq, "checked_at": now}
    if cluster is None:  # a server that is not part of a cluster: it is the leader
        return StoreState(ok=True, leader=None, current=1, **base)  # type: ignore[arg-type]
    if not cluster.leader:
        return StoreState(ok=False, problem=f"{what(store, name)} has no leader", **base)  # type: ignore[arg-type]
    current = 1 + sum(
        1
        for p in cluster.replicas or []
        if p.current and not p.offline and (p.active or 0) < PEER_SILENT_SECONDS * 1e9
    )
    quorum = replicas // 2 + 1
    since = cluster.leader_since.timestamp() if cluster.leader_since else None
    if since is not None and now - since < PEER_SILENT_SECONDS:
        # Just elected, so a quorum voted for it moments ago: its peers have not reported yet.
        return StoreState(ok=True, leader=cluster.leader, current=max(current, quorum), **base)  # type: ignore[arg-type]
    if current < quorum:
        return StoreState(
            ok=False,
            problem=(
                f"{what(store, name)}: leader {cluster.leader} has lost quorum "
                f"({current} of {replicas} replicas reachable)"
            ),
            leader=cluster.leader,
            current=current,
            **base,  # type: ignore[arg-type]
        )
    degraded = None
    if current < replicas:
        degraded = f"{what(store, name)}: {current} of {replicas} replicas current"
    return StoreState(ok=True, problem=degraded, leader=cluster.leader, current=current, **base)  # type: ignore[arg-type]


async def probe(js: JetStreamContext, store: str, name: str) -> StoreState:
    """Ask for the store's stream info (with the context's timeout) and assess the answer."""
    now = time.time()
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        return StoreState(
            store, name, ok=False, problem=f"{what(store, name)} does not exist", checked_at=now, missing=True
        )
    except APIError as exc:
        problem = f"{what(store, name)}: {exc.description or exc}"
        return StoreState(store, name, ok=False, problem=problem, checked_at=now)
    except Exception as exc:  # timeout, no responders, disconnected: nobody answered
        reason = "no answer" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
        problem = (
            f"{what(store, name)} cannot be reached ({reason} within {PROBE_TIMEOUT:g} s: "
            "no leader, or its servers are down)"
        )
        return StoreState(store, name, ok=False, problem=problem, checked_at=now)
    return assess(store, name, info, now)


class StoreWatch:
    """The last probe of each store, for /health and the metrics of one service."""

    def __init__(
        self, nc: Client, stores: dict[str, str], registry: CollectorRegistry, metric_prefix: str
    ) -> None:
        self._js = nc.jetstream(timeout=PROBE_TIMEOUT)
        self._stores = stores  # store -> JetStream stream name
        self.states: dict[str, StoreState] = {}
        self._up = Gauge(
            f"{metric_prefix}_jetstream_store_up",
            "1 while the store answers, has a leader and a quorum of replicas",
            ["store", "name"],
            registry=registry,
        )
        self._current = Gauge(
            f"{metric_prefix}_jetstream_store_replicas_current",
            "Replicas of the store that are current (leader included), as its leader reports",
            ["store", "name"],
            registry=registry,
        )
        for store, name in stores.items():  # until the first probe: not known to be up
            self._up.labels(store, name).set(0)
            self._current.labels(store, name).set(0)

    async def check(self) -> None:
        """Probe every store at once and record the results."""
        results = await asyncio.gather(*(probe(self._js, s, n) for s, n in self._stores.items()))
        for state in results:
            before = self.states.get(state.store)
            if before is None or (before.ok, before.problem) != (state.ok, state.problem):
                if state.ok and state.problem is None:
                    if before is not None:
                        log.info(
                            "%s: available again (leader %s)", what(state.store, state.name), state.leader
                        )
                elif before is None and state.missing:
                    # a replica started before ingest created its stores: the usual order in a
                    # fresh `make run` or compose stack, reported by /health until they exist
                    log.info("%s yet; waiting for ingest to create it", state.problem)
                else:
                    log.warning("%s", state.problem)
            self.states[state.store] = state
            self._up.labels(state.store, state.name).set(1 if state.ok else 0)
            self._current.labels(state.store, state.name).set(state.current)

    async def run(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            await self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    def problems(self) -> list[str]:
        """Stores that cannot be used now (empty before the first probe: nothing known yet)."""
        return [s.problem or f"{s.name} unavailable" for s in self.states.values() if not s.ok]

    def warnings(self) -> list[str]:
        """Stores that work with fewer current replicas than configured."""
        return [s.problem for s in self.states.values() if s.ok and s.problem]

    def as_dict(self) -> dict[str, Any]:
        return {store: state.as_dict() for store, state in self.states.items()}


async def until_available(step: Callable[[], Awaitable[T]], wait_seconds: float) -> T:
    """Run a JetStream set-up step, retrying for `wait_seconds` while JetStream is not ready
    (a cluster electing its leaders at start, or after losing a node) before giving up."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.25
    while True:
        try:
            return await step()
        except (NatsTimeoutError, NoRespondersError, ServiceUnavailableError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("JetStream not answering yet (%s); retrying", exc)
        except APIError as exc:
            if (exc.code != 503 and exc.err_code != 10008) or time.monotonic() + delay > deadline:
                raise
            log.warning("JetStream not ready yet (%s); retrying", exc.description or exc)
        await asyncio.sleep(delay)
        delay = min(2.0, delay * 2)
