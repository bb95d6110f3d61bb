"""hung-request: one request runs past GUNICORN_TIMEOUT while other clients keep coming.

The timeout means something different per worker model, and the row says
what each did. A sync worker reports to the master between requests: past the
timeout the master kills it (WORKER TIMEOUT in the log) and forks another.
gthread, gevent and asgi workers keep reporting while a request waits in a
thread, a greenlet or a coroutine: the timeout only catches a stuck main loop,
and the long request runs to its end. Either way the other clients' requests
must all be answered: that is what is asserted.
"""

import time

from ..clients import InFlight, Load
from ..report import Row
from .context import STEADY_PATH, serving, wait_for_new_worker

TIMEOUT_S = 5  # GUNICORN_TIMEOUT, short for this scenario
LONG_PATH = "/demo/io?ms=8000"  # past it
CLIENTS = 5  # the others, on short requests


def hung_request(preset, context):
    row = Row("hung-request", preset)
    environment = {"GUNICORN_TIMEOUT": str(TIMEOUT_S)}
    with serving(preset, context, "hung-request", extra_env=environment) as (server, master):
        workers = {worker.pid for worker in master.children()}
        with Load(server.port, STEADY_PATH, CLIENTS) as load:
            (outcome,) = InFlight(server.port, LONG_PATH, 1, timeout=15).wait()
            time.sleep(1.0)  # the others go on after the long one's end
        worker_timeout = "WORKER TIMEOUT" in server.log
        replaced_s = wait_for_new_worker(master, workers, timeout=3) if worker_timeout else None
    row.count(load.outcomes)
    row.details.update(
        timeout_s=TIMEOUT_S,
        long_request={"status": outcome.status, "error": outcome.error, "s": outcome.seconds},
        worker_timeout=worker_timeout,
        worker_replaced=replaced_s is not None,
    )
    fate = (
        f"the long request answered {outcome.status} after {outcome.seconds:.1f} s"
        if outcome.status
        else f"the long request {outcome.error} after {outcome.seconds:.1f} s"
    )
    if worker_timeout:
        fate += "; WORKER TIMEOUT, " + ("replaced" if replaced_s is not None else "not replaced")
    row.notes.append(fate)
    row.check(
        "every short request answered",
        row.sent > 0 and row.answered == row.sent,
        f"{row.answered} of {row.sent} answered, {row.failed} failed, {row.lost} lost",
    )
    return [row]
