"""Fixtures: a real nats-server per test on a free loopback port, temp store, stopped after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter

from testbed.harness import NatsServer, Stack
from tests.integration.clustertools import FIGURES


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


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """The cluster tests' measurements (events lost per leader kill, ...), when they ran."""
    if FIGURES:
        terminalreporter.section("NATS cluster figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
