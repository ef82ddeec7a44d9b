"""Wire types of the event log: the bridge's envelope, the payloads we read, journal events.

Decoders are built once. Unknown keys are ignored (CyTube payloads carry many); a field
we read with the wrong type makes the whole message a dead letter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(dt: datetime) -> int:
    """Epoch microseconds of a datetime; a naive one is taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def iso_from_us(us: int) -> str:
    """The bridge's timestamp format: 2025-12-05T17:00:11.402877+00:00."""
    return from_us(us).isoformat()


# --- The bridge envelope (spec 1.3) -------------------------------------------------


class Envelope(msgspec.Struct, frozen=True):
    event_name: str
    payload: msgspec.Raw
    channel: str
    domain: str
    timestamp: datetime | None = None


class EnvelopeOut(msgspec.Struct, frozen=True):
    """What the bridge publishes, in its key order (used by the simulator and tests)."""

    event_name: str
    payload: Any
    channel: str
    domain: str
    timestamp: str
    correlation_id: str


# --- Payloads of the events the projection consumes (spec 1.5, 1.6) ----------------


class ChatPayload(msgspec.Struct, frozen=True):
    username: str | None = None
    user: Any = None  # some bridges send {"name": ...}
    msg: str | None = None
    message: str | None = None
    time: int | float | None = None
    meta: Any = None
    from_: str | None = msgspec.field(default=None, name="from")

    def sender(self) -> str:
        user = self.user
        if isinstance(user, dict):
            name = user.get("name")
            if isinstance(name, str):
                return name
        return self.username or self.from_ or ""

    def text(self) -> str:
        return self.msg if self.msg is not None else (self.message or "")

    def is_shadow(self) -> bool:
        meta = self.meta
        return isinstance(meta, dict) and bool(meta.get("shadow"))


class UserPayload(msgspec.Struct, frozen=True):
    """addUser, userLeave, setAFK, setUserMeta and the entries of userlist / the KV userlist."""

    name: str | None = None
    username: str | None = None
    afk: Any = None
    meta: Any = None

    def user(self) -> str:
        return self.name or self.username or ""

    def meta_afk(self) -> bool:
        return bool(self.meta_flag("afk"))

    def meta_flag(self, key: str) -> bool | None:
        """`meta.<key>` as a bool, or None when the payload does not say."""
        meta = self.meta
        if not isinstance(meta, dict) or key not in meta:
            return None
        return bool(meta[key])


class MediaPayload(msgspec.Struct, frozen=True):
    id: str | int | float | None = None
    title: str | None = None
    type: str | None = None

    def media_id(self) -> str:
        v = self.id
        if v is None:
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)


class EmotePayload(msgspec.Struct, frozen=True):
    """updateEmote / removeEmote / renameEmote."""

    name: str | None = None
    old: str | None = None


EmoteListPayload = list[Any] | dict[str, Any]
UserListPayload = list[UserPayload]


# --- Journal events appended by ingest (userstats.journal.<type>) ------------------


class Tick(msgspec.Struct, frozen=True, tag="tick"):
    timestamp: datetime


class SettingsChanged(msgspec.Struct, frozen=True, tag="settings"):
    """Ingest's projection settings, journaled when they differ from the last ones (a config change)."""

    timestamp: datetime
    trigger_phrases: list[str]
    count_shadow_muted: bool
    population_interval_seconds: int


class KvMedia(msgspec.Struct, frozen=True):
    title: str
    type: str
    id: str


class KvState(msgspec.Struct, frozen=True, tag="kvstate"):
    """The bridge's KV buckets for one channel as ingest read them at start-up."""

    timestamp: datetime
    domain: str
    channel: str
    users: list[UserPayload] | None = None
    emotes: list[str] | None = None
    current_media: KvMedia | None = None


class AliasChange(msgspec.Struct, frozen=True, tag="alias"):
    timestamp: datetime
    action: Literal["add", "delete", "update"]
    username: str = ""
    alias: str = ""
    new_alias: str = ""
    request_id: str = ""


class Forget(msgspec.Struct, frozen=True, tag="forget"):
    """`user.forget`: from here on the projection drops the user's rows and ignores the user.

    It carries only `shared.forget.user_hash(name)`, never the name itself (README "Forgetting
    a user")."""

    timestamp: datetime
    user_hash: str
    request_id: str = ""


class PmRedacted(msgspec.Struct, frozen=True, tag="pm"):
    """A private message, without its text: ingest appends it for each raw PM it projected
    (the raw one is then deleted from the stream). The projection counts the PM here, once
    per `seq` (the raw message's stream sequence): a repeat of an older seq changes nothing."""

    timestamp: datetime  # the PM's own event time
    seq: int
    username: str = ""
    subject: str = ""  # with `error`: the raw PM could not be projected (a dead letter, no bytes)
    error: str = ""


# --- History imported from a kryten-userstats 0.7.1 SQLite file (ingest/importer.py) ---
# Rows travel as JSON arrays. Counts are baselines: a later import of the same `source`
# replaces them (the projection adds the difference), so importing twice never doubles.

CountKind = Literal["message", "pm", "kudos_pp", "kudos_phrase", "emote", "activity"]


class ImportUser(msgspec.Struct, frozen=True, array_like=True):
    username: str
    first_seen_us: int
    last_seen_us: int


class ImportCount(msgspec.Struct, frozen=True, array_like=True):
    """One 0.7.1 aggregate row. `item` is the phrase or emote; n2 only for activity."""

    kind: CountKind
    username: str
    channel: str
    domain: str
    item: str
    n1: int
    n2: int = 0


class ImportMedia(msgspec.Struct, frozen=True, array_like=True):
    row_id: int  # the 0.7.1 row id: with the time it keys the row, so re-imports overwrite
    channel: str
    domain: str
    time_us: int
    title: str
    media_type: str
    media_id: str


class ImportPopulation(msgspec.Struct, frozen=True, array_like=True):
    channel: str
    domain: str
    time_us: int
    connected: int
    chatting: int


class ImportVote(msgspec.Struct, frozen=True, array_like=True):
    channel: str
    domain: str
    title: str
    media_type: str
    media_id: str
    username: str
    vote: int
    time_us: int


class ImportAlias(msgspec.Struct, frozen=True, array_like=True):
    username: str
    alias: str


class ImportBatch(msgspec.Struct, frozen=True, tag="import"):
    timestamp: datetime
    source: str  # names the imported database; a re-import of the same source replaces
    table: str  # the 0.7.1 table these rows came from
    users: list[ImportUser] = []
    counts: list[ImportCount] = []
    media: list[ImportMedia] = []
    population: list[ImportPopulation] = []
    votes: list[ImportVote] = []
    aliases: list[ImportAlias] = []


JournalEvent = Tick | SettingsChanged | KvState | AliasChange | ImportBatch | Forget | PmRedacted

ENVELOPE_DECODER = msgspec.json.Decoder(Envelope)
JOURNAL_DECODER = msgspec.json.Decoder(JournalEvent)
CHAT_DECODER = msgspec.json.Decoder(ChatPayload)
USER_DECODER = msgspec.json.Decoder(UserPayload)
USERLIST_DECODER = msgspec.json.Decoder(UserListPayload)
MEDIA_DECODER = msgspec.json.Decoder(MediaPayload)
EMOTE_DECODER = msgspec.json.Decoder(EmotePayload)
EMOTELIST_DECODER = msgspec.json.Decoder(EmoteListPayload)

_ENCODER = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    return _ENCODER.encode(obj)


def journal_kind(event: JournalEvent) -> str:
    """The subject token of a journal event: its tag."""
    return str(type(event).__struct_config__.tag)
