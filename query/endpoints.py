"""The replica's NATS face: a nats.micro service (`nats micro ls/info/stats` show it) whose
endpoints, in the queue group `userstats-query`, hand each request to a task of its own.

nats.micro awaits a handler before taking the next message of its subscription, so a
handler that waited on the database or on `min_seq` would hold up every other request:
the handler only starts a task, and the task records its real duration and outcome in the
endpoint's statistics when it is done (through query/microstats.py, the one module that touches
nats-py's private fields).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from nats import micro
from nats.aio.client import Client
from nats.micro.request import Handler, Request
from nats.micro.service import Endpoint, Service
from userstats.query import microstats
from userstats.query.handlers import Dispatcher
from userstats.shared import __version__, subjects

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 512


class Endpoints:
    def __init__(self, nc: Client, dispatcher: Dispatcher, metrics_port: int) -> None:
        self._nc = nc
        self._dispatcher = dispatcher
        self._metrics_port = metrics_port
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self.service: Service | None = None

    async def start(self) -> None:
        microstats.check_nats_py()
        self.service = await micro.add_service(
            self._nc,
            name="userstats",
            version=__version__,
            description="CyTube channel statistics (kryten-userstats API), read-only replica",
            metadata={"hostname": socket.gethostname(), "metrics_port": str(self._metrics_port)},
            queue_group=subjects.QUERY_QUEUE_GROUP,
        )
        for name, subject in (("command", subjects.COMMAND_SUBJECT), ("seed", subjects.SEED_WILDCARD)):
            await self.service.add_endpoint(name=name, subject=subject, handler=self._handler())
        microstats.check_endpoints(self.service)
        await self._nc.flush()

    def _handler(self) -> Handler:
        assert self.service is not None
        service = self.service
        index = microstats.next_endpoint(service)

        async def handle(request: Request) -> None:
            task = asyncio.create_task(self._answer(microstats.endpoint_at(service, index), request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return handle

    async def _answer(self, endpoint: Endpoint, request: Request) -> None:
        async with self._slots:
            started = time.perf_counter_ns()
            reply, problem = await self._dispatcher.handle(request.subject, request.data)
            try:
                await request.respond(reply)
            except ValueError:
                pass  # a plain publish: no one to answer (0.7.1 ran the command anyway)
            except Exception as exc:  # the requester went away or NATS is reconnecting
                log.debug("reply on %s not sent: %s", request.subject, exc)
            microstats.record(endpoint, time.perf_counter_ns() - started, problem)

    async def stop(self, timeout: float = 5) -> None:
        if self.service is not None:
            await self.service.stop()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
