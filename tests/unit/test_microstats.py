"""The nats.micro statistics adapter refuses a nats-py it was not written for, with a clear message."""

from __future__ import annotations

from importlib import metadata

import pytest
from userstats.query import microstats


def test_the_installed_nats_py_is_the_pinned_one() -> None:
    assert metadata.version("nats-py") == microstats.PINNED_NATS_PY
    microstats.check_nats_py()


@pytest.mark.parametrize("version", ["2.15.0", "2.16.1", "3.0.0"])
def test_another_nats_py_fails_loudly(version: str) -> None:
    with pytest.raises(
        microstats.UnsupportedNatsPy, match=rf"nats-py {version} is installed.*nats-py==2\.16\.0"
    ):
        microstats.check_nats_py(version)
