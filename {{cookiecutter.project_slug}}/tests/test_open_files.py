"""The open-file limit the master lifts for its workers' connections (openfiles.py)."""

import resource

import pytest

from config.gunicorn.openfiles import RESERVE, lift_soft_limit, shortfall
from config.gunicorn.sizing import connections_held


@pytest.fixture
def soft_limit():
    """Set this process's soft limit of open files for a test; it is put back after."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    if before[1] != resource.RLIM_INFINITY and before[1] < 1024:
        pytest.skip(f"the hard limit of open files is {before[1]}, under 1,024")
    yield lambda soft: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_the_soft_limit_is_lifted_to_the_hard_one(soft_limit):
    soft_limit(512)
    lifted = lift_soft_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert (lifted, soft) in ((hard, hard), (512, 512))  # 512: a hard limit the kernel caps


def test_connections_past_the_limit_are_one_warning_with_what_to_change(soft_limit):
    soft_limit(1024)
    held = connections_held("gevent", 1000)
    assert held == 2000  # worker_connections, and as many again to shed
    warning = shortfall("gevent", held)
    assert "2,000 connections" in warning and "1,024" in warning
    assert "GUNICORN_WORKER_CONNECTIONS" in warning and "LimitNOFILE" in warning
    assert shortfall("gthread", 1024 - RESERVE) is None
    assert shortfall("gthread", 1025 - RESERVE) is not None
    assert shortfall("asgi", connections_held("asgi", 1000)) is None  # no bound to check
