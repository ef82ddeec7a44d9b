"""Snapshot files in a JetStream Object Store, and the KV pointer to the newest one.

Ingest uploads; replicas download. The library's object `get` concatenates bytes (quadratic
in the object size), so downloads here stream chunks straight into a file and hash them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from pathlib import Path

import msgspec
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore
from userstats.shared import replication, subjects
from userstats.shared.replication import Replication, ReplicationError
from userstats.shared.stream import parse_ack_reply

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024  # 4 MiB chunks exceed the default max payload


class SnapshotPointer(msgspec.Struct, frozen=True):
    seq: int
    object: str
    projection_version: int
    generation: str
    size: int
    sha256: str
    created_at: str
    event_time_us: int = 0


class SnapshotError(Exception):
    """A snapshot could not be fetched or does not match its pointer."""


POINTER_DECODER = msgspec.json.Decoder(SnapshotPointer)


POINTER_STREAM = f"KV_{subjects.POINTER_BUCKET}"
SNAPSHOT_STREAM = f"OBJ_{subjects.SNAPSHOT_BUCKET}"


async def ensure_buckets(
    js: JetStreamContext, pointer: Replication | None = None, objects: Replication | None = None
) -> tuple[ObjectStore, KeyValue]:
    """Create (or bind to) the snapshot object store and the pointer KV bucket.

    With a Replication, a missing bucket is created with it and an existing one brought to
    it (ReplicationError if the server refuses); without, an existing one is left as it is.
    """
    what = f"Object Store {subjects.SNAPSHOT_BUCKET}"
    try:
        if objects is not None:
            await replication.apply(js, await js.stream_info(SNAPSHOT_STREAM), objects, what, "snapshots")
        obs = await js.object_store(subjects.SNAPSHOT_BUCKET)
    except NotFoundError:
        rep = objects or Replication()
        try:
            obs = await js.create_object_store(
                subjects.SNAPSHOT_BUCKET,
                config=api.ObjectStoreConfig(
                    bucket=subjects.SNAPSHOT_BUCKET,
                    storage=api.StorageType.FILE,
                    replicas=rep.replicas,
                    placement=rep.placement,
                ),
            )
        except APIError as exc:
            raise ReplicationError(replication.explain(exc, what, "snapshots", rep)) from exc
    what = f"KV bucket {subjects.POINTER_BUCKET}"
    try:
        if pointer is not None:
            await replication.apply(js, await js.stream_info(POINTER_STREAM), pointer, what, "pointer")
        kv = await js.key_value(subjects.POINTER_BUCKET)
    except NotFoundError:
        rep = pointer or Replication()
        try:
            kv = await js.create_key_value(
                config=api.KeyValueConfig(
                    bucket=subjects.POINTER_BUCKET,
                    history=5,
                    storage=api.StorageType.FILE,
                    replicas=rep.replicas,
                    placement=rep.placement,
                )
            )
        except APIError as exc:
            raise ReplicationError(replication.explain(exc, what, "pointer", rep)) from exc
        if rep.placement is not None:  # nats-py's create_key_value drops the placement: move it
            await replication.apply(js, await js.stream_info(POINTER_STREAM), rep, what, "pointer")
    return obs, kv


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
    return h.hexdigest()


async def upload(obs: ObjectStore, name: str, path: Path) -> int:
    """Put the file under `name` in 1 MiB chunks; returns its size."""
    meta = api.ObjectMeta(name=name, options=api.ObjectMetaOptions(max_chunk_size=CHUNK_SIZE))
    with path.open("rb") as f:
        info = await obs.put(name, f, meta=meta)
    return int(info.size or 0)


async def read_pointer(js: JetStreamContext) -> SnapshotPointer | None:
    try:
        kv = await js.key_value(subjects.POINTER_BUCKET)
        entry = await kv.get(subjects.POINTER_KEY)
    except NotFoundError:
        return None
    if entry.value is None:
        return None
    return POINTER_DECODER.decode(entry.value)


async def download(js: JetStreamContext, pointer: SnapshotPointer, dest: Path, timeout: float = 120) -> None:
    """Fetch the pointer's object into `dest`, checking size and sha256."""
    obs = await js.object_store(subjects.SNAPSHOT_BUCKET)
    try:
        info = await obs.get_info(pointer.object)
    except NotFoundError as exc:
        raise SnapshotError(f"snapshot object {pointer.object} is missing") from exc
    if not info.nuid or info.deleted:
        raise SnapshotError(f"snapshot object {pointer.object} was deleted")
    h = hashlib.sha256()
    written = 0
    done = asyncio.get_running_loop().create_future()

    with dest.open("wb") as f:

        async def on_chunk(msg: object) -> None:
            nonlocal written
            data: bytes = msg.data  # type: ignore[attr-defined]
            f.write(data)
            h.update(data)
            written += len(data)
            _, _, pending = parse_ack_reply(msg.reply)  # type: ignore[attr-defined]
            if pending == 0 and not done.done():
                done.set_result(None)

        if info.size:
            sub = await js.subscribe(
                f"$O.{subjects.SNAPSHOT_BUCKET}.C.{info.nuid}", ordered_consumer=True, cb=on_chunk
            )
            try:
                await asyncio.wait_for(done, timeout)
            except TimeoutError as exc:
                raise SnapshotError(f"snapshot {pointer.object}: download timed out") from exc
            finally:
                await sub.unsubscribe()
    if written != pointer.size:
        raise SnapshotError(f"snapshot {pointer.object}: got {written} bytes, pointer says {pointer.size}")
    if h.hexdigest() != pointer.sha256:
        raise SnapshotError(f"snapshot {pointer.object}: checksum mismatch")


def digest_hex(digest: str | None) -> str | None:
    """The hex sha256 of an Object Store digest ("SHA-256=<base64url>"), or None."""
    if not digest or not digest.upper().startswith("SHA-256="):
        return None
    try:
        return base64.urlsafe_b64decode(digest[len("SHA-256=") :]).hex()
    except (ValueError, TypeError):
        return None


async def check_object(js: JetStreamContext, pointer: SnapshotPointer) -> str | None:
    """Why the pointer's object is not the snapshot it describes, or None if it is."""
    try:
        obs = await js.object_store(subjects.SNAPSHOT_BUCKET)
        info = await obs.get_info(pointer.object)
    except NotFoundError:
        return f"snapshot object {pointer.object} is missing"
    if not info.nuid or info.deleted:
        return f"snapshot object {pointer.object} was deleted"
    if int(info.size or 0) != pointer.size:
        return f"snapshot object {pointer.object} has {info.size} bytes, the pointer says {pointer.size}"
    if digest_hex(info.digest) != pointer.sha256:
        return f"snapshot object {pointer.object} does not match the pointer's checksum"
    return None


async def prune(obs: ObjectStore, keep: list[str]) -> int:
    """Delete snapshot objects not named in `keep`; returns how many were deleted."""
    deleted = 0
    try:
        infos = await obs.list()
    except NotFoundError:
        return 0
    for info in infos:
        if info.name not in keep and not info.deleted:
            try:
                await obs.delete(info.name)
                deleted += 1
            except NotFoundError:
                pass
    return deleted
