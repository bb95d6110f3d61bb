"""worker-crash: kill -9 one worker under steady load.

The master must fork a replacement at once, and only the requests the dead
worker held may be lost: the others' workers, and connections still waiting
in the listen backlog, are not its. The worker is stopped (SIGSTOP) before
its connections are counted, so that it takes no new one meanwhile; the
count is the bound on what may be lost, and at most the worker's concurrency
(1 for sync, its threads for gthread, its connections for gevent; asgi has
no limit).
"""

import time

from ..clients import Load
from ..report import Row
from .context import STEADY_PATH, serving, wait_for_new_worker

CLIENTS = 20
REPLACED_WITHIN_S = 2.0


def worker_crash(preset, context):
    row = Row("worker-crash", preset)
    concurrency = per_worker_concurrency(preset, context.config[preset])
    with (
        serving(preset, context, "worker-crash") as (server, master),
        Load(server.port, STEADY_PATH, CLIENTS) as load,
    ):
        time.sleep(context.duration(2.0, 1.0))
        workers = master.children()
        victim = workers[0]
        victim.suspend()
        held = connections_held(victim, server.port)
        victim.kill()
        known = {worker.pid for worker in workers}
        replaced_s = wait_for_new_worker(master, known, timeout=REPLACED_WITHIN_S + 3)
        time.sleep(context.duration(4.0, 2.0))
    row.count(load.outcomes)
    row.recovery_s = replaced_s
    row.details.update(
        clients=CLIENTS,
        killed_pid=victim.pid,
        killed_worker_held=held,
        worker_concurrency=concurrency,
        replaced_s=replaced_s,
    )
    replaced = "not replaced" if replaced_s is None else f"replaced in {replaced_s:.2f} s"
    row.notes.append(f"the killed worker held {held} request(s); {replaced}")
    row.check(
        f"a new worker within {REPLACED_WITHIN_S:g} s",
        replaced_s is not None and replaced_s <= REPLACED_WITHIN_S,
        replaced,
    )
    limit = "" if concurrency is None else f", at most its concurrency, {concurrency}"
    row.check(
        f"no more lost than the killed worker held ({held}{limit})",
        row.lost <= held and (concurrency is None or held <= concurrency),
        f"{row.lost} lost",
    )
    row.check("no HTTP error", row.failed == 0, f"{row.failed} failed")
    return [row]


def per_worker_concurrency(preset, config):
    """Requests one worker serves at once; None: no limit (the asgi worker)."""
    return {
        "sync": 1,
        "gthread": int(config["threads"]),
        "gevent": int(config["worker_connections"]),
    }.get(preset)


def connections_held(process, port):
    """Client connections to `port` that `process` has accepted (its listener excluded)."""
    return sum(
        1
        for connection in process.net_connections(kind="tcp")
        if connection.laddr and connection.laddr.port == port and connection.raddr
    )
