"""Fixtures of the integration tests (the nats-server and stack fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from testbed.harness import Stack, caught_up, connect, publish_all
from tests.integration.knownlog import G, known_log


@pytest.fixture
async def nc(stack: Stack) -> AsyncIterator[Client]:
    """A client of a stack (ingest and one replica for cytu.be/420Grindhouse) holding the known log."""
    stack.ingest(USERSTATS_CHANNELS=f"cytu.be/{G}").wait_healthy()
    query = stack.query(USERSTATS_CHANNELS=f"cytu.be/{G}")
    client = await connect(stack.nats.url)
    await publish_all(client, [(s, d) for s, d, _ in known_log().messages])
    query.wait_healthy()
    await caught_up(client, query)
    yield client
    await client.close()
