"""What every scenario is given, and the server it starts from."""

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from loadtest.server import running_server

STEADY_PATH = "/demo/io?ms=50"  # steady load: a request that waits like a slow upstream
BOOT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Context:
    results: Path  # this session's folder: server logs go there
    quick: bool
    database_url: str | None  # None: no PostgreSQL, the db-outage scenario is skipped
    config: dict  # preset: its gunicorn settings, as --print-config gives them

    def log(self, scenario, preset):
        return self.results / f"{scenario}-{preset}.log"

    def duration(self, full_s, quick_s):
        return quick_s if self.quick else full_s


@contextmanager
def serving(preset, context, scenario, extra_env=None):
    """(server, its master as a psutil.Process), once every worker has booted.

    /readyz answers as soon as the first worker does: a scenario that noted the workers
    then would take the later ones for replacements.
    """
    log = context.log(scenario, preset)
    with running_server(preset, log, extra_env=extra_env) as server:
        master = psutil.Process(server.process.pid)
        expected = int(context.config[preset]["workers"])
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while len(master.children()) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        yield server, master


def wait_for_new_worker(master, known_pids, timeout):
    """Seconds until the master has a worker not in `known_pids`; None if none came."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if any(child.pid not in known_pids for child in master.children()):
            return time.monotonic() - started
        time.sleep(0.02)
    return None
