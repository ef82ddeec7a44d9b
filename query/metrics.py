"""Replica metrics on port 28282: the spec's names (from cached table totals) plus our own.

The spec's figures are recomputed on the database thread after batches are applied, at
most once a second; a scrape only reads the cached numbers. They are exposed as gauges
with the spec's exact names: 0.7.1 typed some as counters without a `_total` suffix,
which prometheus_client cannot emit, and as database totals they can go down anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

SPEC_GAUGES = (
    ("userstats_total_users_tracked", "Users known to userstats", "total_users"),
    ("userstats_total_messages", "Chat messages counted, all channels and domains", "total_messages"),
    ("userstats_total_pms", "Private messages counted", "total_pms"),
    ("userstats_total_kudos", "Kudos received: ++ plus phrases", "total_kudos"),
    ("userstats_total_kudos_plusplus", "++ kudos received", "total_kudos_plusplus"),
    ("userstats_total_kudos_phrases", "Phrase kudos received", "total_kudos_phrases"),
    ("userstats_total_emote_usage", "Emote uses counted", "total_emotes"),
    ("userstats_total_media_changes", "Media changes logged", "total_media_changes"),
    ("userstats_active_sessions", "Open sessions, all channels", "active_sessions"),
)


def spec_totals(totals: dict[str, int]) -> dict[str, int]:
    """Table totals plus the spec's combined kudos figure (++ plus phrases, since 0.4.6)."""
    return {**totals, "total_kudos": totals["total_kudos_plusplus"] + totals["total_kudos_phrases"]}


class SpecCollector(Collector):
    """The 13 metrics of spec section 5, in its exposition order; cheap to collect."""

    def __init__(self, status: Callable[[], tuple[float, bool, bool]]) -> None:
        self.totals: dict[str, int] = {}
        self.dashboard: dict[str, list[tuple[Any, ...]]] = {}
        self._status = status

    def collect(self) -> Iterator[Metric]:
        uptime, nats_ok, db_ok = self._status()
        yield GaugeMetricFamily(
            "userstats_uptime_seconds", "Seconds since the replica started", round(uptime, 2)
        )
        yield GaugeMetricFamily("userstats_service_status", "1 while the service is running", 1)
        yield GaugeMetricFamily("userstats_nats_connected", "1 while connected to NATS", 1 if nats_ok else 0)
        yield GaugeMetricFamily("userstats_database_connected", "1 once tables are loaded", 1 if db_ok else 0)
        for name, doc, key in SPEC_GAUGES:
            if key in self.totals:
                yield GaugeMetricFamily(name, doc, self.totals[key])
        yield from self._labelled()

    def _labelled(self) -> Iterator[Metric]:
        """Per-channel figures and top-10 lists for dashboards (bounded cardinality)."""
        d = self.dashboard
        if not d:
            return
        messages = GaugeMetricFamily(
            "userstats_channel_messages", "Chat messages counted per channel", labels=["domain", "channel"]
        )
        for domain, channel, n in d["channel_messages"]:
            messages.add_metric([domain, channel], n)
        yield messages
        connected = GaugeMetricFamily(
            "userstats_channel_connected",
            "Users in the channel at the newest population row",
            labels=["domain", "channel"],
        )
        chatting = GaugeMetricFamily(
            "userstats_channel_chatting",
            "Users not AFK at the newest population row",
            labels=["domain", "channel"],
        )
        for domain, channel, c, k in d["channel_population"]:
            connected.add_metric([domain, channel], c)
            chatting.add_metric([domain, channel], k)
        yield connected
        yield chatting
        for key, name, doc, label in (
            (
                "top_messages",
                "userstats_top_user_messages",
                "Messages of the 10 most active users",
                "username",
            ),
            ("top_kudos", "userstats_top_user_kudos", "Kudos of the 10 most thanked users", "username"),
            ("top_emotes", "userstats_top_emote_uses", "Uses of the 10 most used emotes", "emote"),
        ):
            family = GaugeMetricFamily(name, f"{doc}, per domain", labels=["domain", label])
            for domain, who, n in d[key]:
                family.add_metric([domain, who], n)
            yield family


class QueryMetrics:
    def __init__(self, status: Callable[[], tuple[float, bool, bool]]) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.spec = SpecCollector(status)
        r.register(self.spec)
        self.requests = Counter(
            "userstats_query_requests", "Requests answered", ["command", "outcome"], registry=r
        )
        self.latency = Histogram(
            "userstats_query_request_duration_seconds",
            "Time from receiving a request to sending its reply",
            ["command"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
            registry=r,
        )
        self.as_of_seq = Gauge(
            "userstats_query_as_of_seq", "Stream sequence the figures on this page were read at", registry=r
        )
        self.follow_lag = Gauge(
            "userstats_query_follow_lag_events", "Stream messages not yet applied by this replica", registry=r
        )
        self.snapshot_age = Gauge(
            "userstats_query_snapshot_age_seconds", "Age of the snapshot this replica loaded", registry=r
        )
        self.following = Gauge(
            "userstats_query_following", "1 while applying the stream after the snapshot", registry=r
        )
        self.version_mismatch = Gauge(
            "userstats_query_projection_version_mismatch",
            "1 when the snapshot was made by another projection version (not following)",
            registry=r,
        )
        self.snapshot_failures = Gauge(
            "userstats_query_snapshot_failures", "Snapshots that could not be loaded", registry=r
        )
        self.dead_letters = Gauge(
            "userstats_query_dead_letters", "Dead letters in this replica's copy", registry=r
        )
        self.cache_hits = Counter(
            "userstats_query_cache_hits", "Replies served from the reply cache", registry=r
        )
        self.started = time.monotonic()
