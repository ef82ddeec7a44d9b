"""Fixtures: a real nats-server per test on a free loopback port, temp store, stopped after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import NatsServer, Stack


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats-store")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(tmp_path: Path, nats_server: NatsServer) -> Iterator[Stack]:
    s = Stack(tmp_path, nats_server)
    yield s
    s.stop_all()
