"""Replication settings, how an existing store's config is compared and changed, and what a
stream info answer says about a store's health (pure; the cluster tests run the real thing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.js import api
from nats.js.errors import APIError
from userstats.ingest.stream_setup import stream_config
from userstats.shared import jshealth, replication, settings_load
from userstats.shared.natsconn import connect_options
from userstats.shared.replication import Replication
from userstats.shared.settings_load import ConfigError
from userstats.shared.subjects import DEFAULT_STREAM


def test_replication_defaults_to_r1_without_placement() -> None:
    u = settings_load.load(None, env={}).userstats
    for store in replication.STORES:
        assert replication.for_store(u, store) == Replication(1)
    assert stream_config(u).num_replicas == 1 and stream_config(u).placement is None
    assert connect_options(settings_load.load(None, env={}).nats, "x")["dont_randomize"] is False


def test_one_setting_for_all_three_and_one_per_store(tmp_path: Path) -> None:
    env = {
        "USERSTATS_REPLICAS": "3",
        "USERSTATS_POINTER_REPLICAS": "5",
        "USERSTATS_PLACEMENT_CLUSTER": "east",
        "USERSTATS_PLACEMENT_TAGS": "ssd, az:1",
        "NATS_RANDOMIZE": "false",
    }
    s = settings_load.load(None, env=env)
    u = s.userstats
    assert replication.for_store(u, "stream") == Replication(3, "east", ("ssd", "az:1"))
    assert replication.for_store(u, "pointer").replicas == 5
    assert replication.for_store(u, "snapshots").replicas == 3
    placement = stream_config(u).placement
    assert placement is not None and (placement.cluster, placement.tags) == ("east", ["ssd", "az:1"])
    assert connect_options(s.nats, "x")["dont_randomize"] is True
    cfg = tmp_path / "config.json"
    cfg.write_text('{"userstats": {"replicas": 3, "snapshot_replicas": 1}}')
    u = settings_load.load(cfg, env={}).userstats
    assert [replication.for_store(u, x).replicas for x in replication.STORES] == [3, 3, 1]


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"USERSTATS_REPLICAS": "0"}, "$.userstats.replicas"),
        ({"USERSTATS_REPLICAS": "7"}, "$.userstats.replicas"),
        ({"USERSTATS_STREAM_REPLICAS": "three"}, "$.userstats.stream_replicas"),
        ({"NATS_RANDOMIZE": "maybe"}, "$.nats.randomize"),
    ],
)
def test_bad_replication_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("$", r"\$")):
        settings_load.load(None, env=env)


def config(replicas: int = 1, placement: api.Placement | None = None) -> api.StreamConfig:
    return api.StreamConfig(name="S", subjects=["a.>"], num_replicas=replicas, placement=placement)


def test_differs_and_with_replication() -> None:
    assert not replication.differs(config(3), Replication(3))
    assert replication.differs(config(1), Replication(3))
    # no placement configured: whatever placement the store has is left alone
    on_east = config(3, api.Placement(cluster="east"))
    assert not replication.differs(on_east, Replication(3))
    assert replication.with_replication(on_east, Replication(3)).placement == api.Placement(cluster="east")
    # configured: compared (tags in any order) and set
    tagged = config(3, api.Placement(tags=["b", "a"]))
    assert not replication.differs(tagged, Replication(3, tags=("a", "b")))
    assert replication.differs(tagged, Replication(3, tags=("a",)))
    moved = replication.with_replication(config(1), Replication(3, "west", ("ssd",)))
    assert moved.num_replicas == 3 and moved.placement == api.Placement(cluster="west", tags=["ssd"])
    assert moved.subjects == ["a.>"]


@pytest.mark.parametrize(
    ("err_code", "description", "expect"),
    [
        (
            10074,
            "replicas > 1 not supported in non-clustered mode",
            "this NATS server is not part of a cluster",
        ),
        (10005, "no suitable peers for placement", "the cluster has fewer JetStream servers than 3"),
        (10124, "stream move already in progress", "still being carried out"),
        (10052, "stream configuration update can not change storage type", "another storage type"),
    ],
)
def test_refusals_are_explained_with_the_setting(err_code: int, description: str, expect: str) -> None:
    exc = APIError(code=400, err_code=err_code, description=description)
    text = replication.explain(exc, "stream USERSTATS", "stream", Replication(3), have=1)
    assert text.startswith(f"cannot change stream USERSTATS from R1 to R3: {description}")
    assert expect in text
    # where the configuration is the way out, the message names the setting
    assert ("userstats.stream_replicas" in text) == (err_code in (10074, 10005))


def info(
    replicas: int,
    leader: str | None,
    peers: list[tuple[bool, float]] | None = None,
    since_s: float | None = None,
    clustered: bool = True,
) -> api.StreamInfo:
    """A stream info answer: peers as (current, seconds since the leader heard from it)."""
    resp: dict[str, Any] = {
        "config": {"name": DEFAULT_STREAM, "num_replicas": replicas},
        "state": {"messages": 10, "bytes": 1, "first_seq": 1, "last_seq": 10, "consumer_count": 0},
    }
    if clustered:
        resp["cluster"] = {
            "leader": leader,
            "replicas": [
                {"name": f"n{i + 2}", "current": cur, "active": int(age * 1e9)}
                for i, (cur, age) in enumerate(peers or [])
            ],
        }
        if since_s is not None:
            resp["cluster"]["leader_since"] = (datetime.now(UTC) - timedelta(seconds=since_s)).isoformat()
    return api.StreamInfo.from_response(resp)


@pytest.mark.parametrize(
    ("answer", "ok", "problem", "current"),
    [
        (info(1, None, clustered=False), True, None, 1),  # a single server
        (info(1, "n1"), True, None, 1),
        (info(3, "n1", [(True, 0.2), (True, 0.5)], since_s=60), True, None, 3),
        (
            info(3, "n1", [(True, 0.2), (False, 0.0)], since_s=60),
            True,
            "stream USERSTATS: 2 of 3 replicas current",
            2,
        ),
        (
            info(3, "n1", [(True, 0.2), (True, 4.0)], since_s=60),
            True,
            "stream USERSTATS: 2 of 3 replicas current",
            2,
        ),
        (
            info(3, "n1", [(True, 5.0), (True, 9.0)], since_s=60),  # its peers died: no quorum
            False,
            "stream USERSTATS: leader n1 has lost quorum (1 of 3 replicas reachable)",
            1,
        ),
        (lambda: info(3, "n1", [(False, 0.0), (False, 0.0)], since_s=0.5), True, None, 2),  # just elected
        (info(3, None, [(False, 0.0), (False, 0.0)]), False, "stream USERSTATS has no leader", 0),
    ],
)
def test_what_a_stream_info_answer_says(
    answer: api.StreamInfo | Callable[[], api.StreamInfo], ok: bool, problem: str | None, current: int
) -> None:
    if callable(answer):  # made now: its leader_since is relative to the time of the test
        answer = answer()
    state = jshealth.assess("stream", DEFAULT_STREAM, answer, time.time())
    assert (state.ok, state.problem, state.current) == (ok, problem, current)
    assert state.last_seq == 10


def test_store_names_in_messages() -> None:
    assert jshealth.what("pointer", "KV_userstats_pointer") == "KV bucket userstats_pointer"
    assert jshealth.what("snapshots", "OBJ_userstats_snapshots") == "Object Store userstats_snapshots"
