"""Every subject, stream, bucket and queue-group name in one place."""

from __future__ import annotations

from collections.abc import Iterable

# The bridge (kryten-robot) publishes kryten.events.cytube.<channel>.<event> with core NATS.
EVENTS_PREFIX = "kryten.events.cytube"
EVENTS_WILDCARD = f"{EVENTS_PREFIX}.>"

# Events ingest appends itself (ticks, settings, start-up KV state, alias writes, imports).
JOURNAL_PREFIX = "userstats.journal"
JOURNAL_WILDCARD = f"{JOURNAL_PREFIX}.>"

# The stream captures one subject per bridge event the projection handles, and the journal
# (captured_subjects; the list is shared.projection.CAPTURED_SUBJECTS, derived from the
# projection's own handler table). Every reader filters on all the stream can hold: what it
# captures now and what a stream made before this rule captured (kryten.events.cytube.>).
STREAM_SUBJECTS = [EVENTS_WILDCARD, JOURNAL_WILDCARD]
DEFAULT_STREAM = "USERSTATS"

# Query side: the kryten-userstats 0.7.1 unified command subject and the seed's per-domain API.
COMMAND_SUBJECT = "kryten.userstats.command"
SEED_PREFIX = "cytube.query.userstats"
SEED_WILDCARD = f"{SEED_PREFIX}.>"
QUERY_QUEUE_GROUP = "userstats-query"

# Ingest's private command subject (alias writes forwarded by replicas), and its queue group.
INGEST_COMMAND_SUBJECT = "userstats.ingest.command"
INGEST_QUEUE_GROUP = "userstats-ingest"
# Maintenance (rebuild swap, dead letters) from the ingest CLI on the same host.
INGEST_ADMIN_SUBJECT = "userstats.ingest.admin"

# Snapshots: JetStream Object Store for the files, KV for the pointer to the newest one.
SNAPSHOT_BUCKET = "userstats_snapshots"
POINTER_BUCKET = "userstats_pointer"
POINTER_KEY = "latest"

# kryten lifecycle (spec 6.3).
LIFECYCLE_PREFIX = "kryten.lifecycle"
ROBOT_STARTUP = "kryten.lifecycle.robot.startup"
GROUP_RESTART = "kryten.lifecycle.group.restart"
DISCOVERY_POLL = "kryten.service.discovery.poll"


def captured_subjects(event_names: Iterable[str]) -> list[str]:
    """The stream's subjects: kryten.events.cytube.*.<event> for each of these (lower-cased)
    bridge event names (the bridge lower-cases the name into the subject, and its channel
    token has no dots), plus the journal."""
    return [*(f"{EVENTS_PREFIX}.*.{name}" for name in event_names), JOURNAL_WILDCARD]


def journal_subject(kind: str) -> str:
    """Subject of a journal event of the given kind (tick, settings, kvstate, alias, ...)."""
    return f"{JOURNAL_PREFIX}.{kind}"


def kv_bucket(channel: str, kind: str) -> str:
    """The bridge's KV bucket name: kryten_<channel as configured>_<kind> (spec 2.1)."""
    return f"kryten_{channel}_{kind}"


def normalize_token(token: str) -> str:
    """The bridge's subject-token normalization (spec 1.2)."""
    out = token.lower().replace(".", "").replace(" ", "-")
    out = "".join(ch for ch in out if ch not in _DELETED_CHARS)
    return out[:100]


_DELETED_CHARS = frozenset("*>!@#$%^&*()+=[]{|}\\:;\"'<>,?/")


def event_subject(channel: str, event_name: str) -> str:
    """Subject the bridge publishes an event on."""
    return f"{EVENTS_PREFIX}.{normalize_token(channel)}.{normalize_token(event_name)}"
