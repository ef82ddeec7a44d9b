"""The one place that writes nats-py's private nats.micro `Endpoint` statistics fields.

nats.micro counts a request as done when its handler returns, but our handler only starts a
task (see endpoints.py), so the real duration and outcome are recorded here, by hand, into
fields nats-py does not promise to keep. The adapter is pinned to the nats-py it was written
against: on another version the replica refuses to start, with a message saying why, rather
than report wrong `nats micro stats` or fail on the first request.
"""

from __future__ import annotations

from importlib import metadata

from nats.micro.service import Endpoint, Service

PINNED_NATS_PY = "2.16.0"
FIELDS = ("_num_requests", "_num_errors", "_processing_time", "_average_processing_time", "_last_error")


class UnsupportedNatsPy(RuntimeError):
    """The installed nats-py is not the version the micro statistics adapter was written for."""


def check_nats_py(installed: str | None = None) -> None:
    """Raise UnsupportedNatsPy unless nats-py is the pinned version (call it before serving)."""
    version = installed if installed is not None else metadata.version("nats-py")
    if version != PINNED_NATS_PY:
        raise UnsupportedNatsPy(
            f"nats-py {version} is installed, but query/microstats.py writes nats.micro's private "
            f"Endpoint statistics fields as nats-py {PINNED_NATS_PY} has them: install nats-py=="
            f"{PINNED_NATS_PY} (requirements.lock), or check those fields and raise PINNED_NATS_PY"
        )


def next_endpoint(service: Service) -> int:
    """The index of the endpoint the next `add_endpoint` on `service` creates."""
    return len(service._endpoints)


def endpoint_at(service: Service, index: int) -> Endpoint:
    endpoint: Endpoint = service._endpoints[index]
    return endpoint


def check_endpoints(service: Service) -> None:
    """Raise UnsupportedNatsPy if the service's endpoints lack a field `record` writes."""
    for endpoint in service._endpoints:
        missing = [f for f in FIELDS if not hasattr(endpoint, f)]
        if missing:
            raise UnsupportedNatsPy(
                f"nats.micro Endpoint has no {', '.join(missing)}: see query/microstats.py"
            )


def record(endpoint: Endpoint, duration_ns: int, problem: str | None) -> None:
    """Add one request's real duration (and its error, if any) to the endpoint's statistics."""
    endpoint._processing_time += duration_ns
    if endpoint._num_requests:
        endpoint._average_processing_time = endpoint._processing_time // endpoint._num_requests
    if problem is not None:
        endpoint._num_errors += 1
        endpoint._last_error = problem  # type: ignore[assignment]
