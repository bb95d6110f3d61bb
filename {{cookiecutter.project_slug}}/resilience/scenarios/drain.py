"""drain: SIGTERM to the master with 50 requests in flight, most still in the listen backlog.

What a deploy, a scale-down or `docker stop` does to a server under load.
The clients outnumber the sync preset's workers: most of their connections
have been accepted by the kernel, not yet by a worker. Every one of them must
be answered, and the master must exit 0 within graceful_timeout, before the
orchestrator's SIGKILL.
"""

import os
import signal
import subprocess
import time

from ..clients import InFlight
from ..report import Row
from .context import serving

CLIENTS = 50
PATH = "/demo/io?ms=1000"


def drain(preset, context):
    row = Row("drain", preset)
    graceful_s = float(context.config[preset]["graceful_timeout"])
    with serving(preset, context, "drain") as (server, _):
        in_flight = InFlight(server.port, PATH, CLIENTS, timeout=graceful_s + 10)
        all_sent = in_flight.wait_until_sent()
        time.sleep(0.3)  # each worker takes what it can; the rest waits in the backlog
        signalled = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        try:
            returncode = server.process.wait(timeout=graceful_s + 10)
        except subprocess.TimeoutExpired:
            returncode = None  # running_server kills it on the way out
        exit_s = time.monotonic() - signalled
        outcomes = in_flight.wait()
    row.count(outcomes)
    ok = sum(1 for outcome in outcomes if outcome.status == 200)
    row.details.update(clients=CLIENTS, all_sent=all_sent, returncode=returncode, exit_s=exit_s)
    exited = (
        f"master exited {returncode} after {exit_s:.1f} s"
        if returncode is not None
        else f"master still running {exit_s:.0f} s after SIGTERM"
    )
    row.notes.append(exited)
    row.check(
        f"all {CLIENTS} answered 200",
        ok == CLIENTS,
        f"{ok} answered 200, {row.failed} failed, {row.lost} lost",
    )
    row.check(
        f"the master exits 0 within graceful_timeout ({graceful_s:g} s)",
        returncode == 0 and exit_s <= graceful_s,
        exited,
    )
    return [row]
