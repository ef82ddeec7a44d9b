"""Ingest's Prometheus metrics (port 28283), on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.events_projected = Counter(
            "userstats_ingest_events_projected",
            "Stream messages this process projected beyond the checkpoint it started at "
            "(re-projecting after a rebuild swap does not count them again)",
            registry=r,
        )
        self.projected_through = 0  # the highest checkpoint this process has committed
        self.dead_letters = Counter(
            "userstats_ingest_dead_letters", "Messages recorded as dead letters", registry=r
        )
        self.pms_erased = Counter(
            "userstats_ingest_pms_erased",
            "Raw private messages replaced by a text-free journal event and deleted from the stream",
            registry=r,
        )
        self.pms_pending = Gauge(
            "userstats_ingest_pms_to_delete",
            "Raw private messages counted (or being counted) and not deleted from the stream yet",
            registry=r,
        )
        self.checkpoint_seq = Gauge(
            "userstats_ingest_checkpoint_seq", "Stream sequence the tables reflect", registry=r
        )
        self.stream_last_seq = Gauge(
            "userstats_ingest_stream_last_seq", "Last sequence stored in the stream", registry=r
        )
        self.lag = Gauge("userstats_ingest_lag_events", "Stream last seq minus checkpoint", registry=r)
        self.batch_seconds = Histogram(
            "userstats_ingest_batch_duration_seconds",
            "Time to write one batch (one DuckDB transaction)",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.batch_events = Histogram(
            "userstats_ingest_batch_events",
            "Messages per batch",
            buckets=(1, 10, 100, 1000, 5000, 10000, 20000, 50000),
            registry=r,
        )
        self.apply_failures = Counter(
            "userstats_ingest_apply_failures", "Batches whose transaction failed", registry=r
        )
        self.reader_restarts = Counter(
            "userstats_ingest_stream_reader_restarts",
            "Stream readers restarted because they delivered nothing while the stream held more",
            registry=r,
        )
        self.snapshot_seconds = Histogram(
            "userstats_ingest_snapshot_duration_seconds",
            "Time to write and upload one snapshot",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.snapshot_bytes = Gauge(
            "userstats_ingest_snapshot_bytes", "Size of the newest snapshot", registry=r
        )
        self.snapshot_seq = Gauge(
            "userstats_ingest_snapshot_seq", "Stream sequence of the newest snapshot", registry=r
        )
        self.snapshots = Counter("userstats_ingest_snapshots_published", "Snapshots published", registry=r)
        self.snapshot_failures = Counter(
            "userstats_ingest_snapshot_failures", "Snapshots that failed", registry=r
        )
        self.snapshot_repairs = Counter(
            "userstats_ingest_snapshot_repairs",
            "Snapshots published again because the pointer's object was missing, corrupt or foreign",
            registry=r,
        )
        self.nats_connected = Gauge(
            "userstats_ingest_nats_connected", "1 while connected to NATS", registry=r
        )
