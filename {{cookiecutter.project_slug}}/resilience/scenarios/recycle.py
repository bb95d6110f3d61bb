"""recycle: a worker whose memory leaks is replaced under steady load, and nothing is lost.

The presets replace a worker once its RSS has grown GUNICORN_RECYCLE_GROWTH_MIB
past its size after warm-up (workers/recycle.py: the size is taken at the first
check, every 5 s, after 1,000 requests). Here the bound is 32 MiB. 20 clients
keep /demo/io?ms=20 busy; /healthz from 20 more warms every worker up (twice
1,000 requests per worker); one check interval of steady load gives the
steady-state p99; then /demo/leak keeps 1 MiB a request, 50 requests a second
over fresh connections, until a worker is being replaced. Expected: at least
one worker replaced, no request failed or lost, and the p99 of the steady
requests around the replacement (from half a second before the worker's
"Replacing worker" line to a second after its successor is up) at most 1.5
times the steady-state p99.

The control run is the same without the leak: no worker may be replaced. With
--quick there is none; the leak row's steady phase, warm-up past, is the control.
Through nginx (not with --quick), the load and the leak go through the project's
front, which keeps connections alive to the workers being replaced.
"""

import threading
import time

from .. import nginx
from ..clients import Load, get
from ..report import Row
from .context import serving, wait_for_new_worker

GROWTH_MIB = 32
LEAK_PATH = "/demo/leak?kb=1024"
LEAK_EVERY_S = 0.02
LEAK_MOST_MIB_PER_WORKER = 64  # the leak stops there if no worker is replaced
STEADY_PATH = "/demo/io?ms=20"
CLIENTS = 20
WARMUP_REQUESTS = 1_000  # recycle.py's, per worker
WARMUP_FACTOR = 2  # the requests do not spread evenly over the workers
CHECK_EVERY_S = 5.0  # recycle.py's
WARMUP_TIMEOUT_S = 60.0
REPLACED_WITHIN_S = 20.0  # from the leak's start: up to 64 MiB a worker, then two checks
AFTER_S = 2.0
P99_FACTOR = 1.5
REPLACING = "Replacing worker"
QUICK_NO_CONTROL = "--quick: the leak row's steady phase is the control"
QUICK_NO_NGINX = "--quick: through nginx in the full session only (2 minutes more)"


def recycle(preset, context):
    environment = {"GUNICORN_RECYCLE_GROWTH_MIB": str(GROWTH_MIB)}
    rows = []
    with serving(preset, context, "recycle", extra_env=environment) as (server, master):
        rows.append(run(server, master, server.port, Row("recycle", preset), leak=True))
    reason = QUICK_NO_NGINX if context.quick else nginx.unavailable()
    if reason is not None:
        rows.append(Row("recycle", preset, via="nginx", skipped=reason))
    else:
        row = Row("recycle", preset, via="nginx")
        with serving(preset, context, "recycle-nginx", extra_env=environment) as (server, master):
            try:
                with nginx.running_nginx(server.port, context.results / f"nginx-{preset}") as port:
                    rows.append(run(server, master, port, row, leak=True))
            except nginx.NginxError as exc:
                row.error = str(exc)
                rows.append(row)
    control = Row("recycle", preset, via="control")
    if context.quick:
        control.skipped = QUICK_NO_CONTROL
        return [*rows, control]
    with serving(preset, context, "recycle-control", extra_env=environment) as (server, master):
        rows.append(run(server, master, server.port, control, leak=False))
    return rows


def run(server, master, port, row, leak):
    workers = {worker.pid for worker in master.children()}
    log_start = len(server.log)
    with Load(port, STEADY_PATH, CLIENTS) as steady:
        with Load(port, "/healthz", CLIENTS) as warm:
            warmed = wait_for(
                lambda: len(warm.outcomes) >= WARMUP_FACTOR * WARMUP_REQUESTS * len(workers),
                WARMUP_TIMEOUT_S,
            )
        steady_from = time.monotonic()
        time.sleep(CHECK_EVERY_S + 1)  # a check records each worker's warm size
        steady_to = time.monotonic()
        replaced_before = server.log.count(REPLACING, log_start)
        leaker = Leaker(port, LEAK_MOST_MIB_PER_WORKER * len(workers)) if leak else None
        started = time.monotonic()
        seen = wait_for(lambda: REPLACING in server.log[log_start:], REPLACED_WITHIN_S)
        replacing_at = time.monotonic() if seen else None
        if leaker is not None:
            leaker.stop()
        new_worker_s = wait_for_new_worker(master, workers, timeout=5.0) if seen else None
        new_worker_at = time.monotonic() if new_worker_s is not None else None
        time.sleep(AFTER_S)
        ended = time.monotonic()
    answer = get(port, "/healthz")
    outcomes = steady.outcomes + warm.outcomes + (leaker.outcomes if leaker else [])
    row.count(outcomes)
    replaced = server.log.count(REPLACING, log_start)
    steady_p99 = p99(steady.outcomes, steady_from, steady_to)
    window = (replacing_at - 0.5, (new_worker_at or ended) + 1.0) if replacing_at else None
    window_p99 = p99(steady.outcomes, *window) if window else None
    row.details.update(
        growth_mib=GROWTH_MIB,
        warmed_up=warmed,
        leaked_mib=sum(1 for o in leaker.outcomes if o.status == 200) if leaker else 0,
        replaced_before_leak=replaced_before,
        workers_replaced=replaced,
        new_worker_pids=sorted({worker.pid for worker in master.children()} - workers),
        replacement_seen_after_s=(replacing_at - started) if replacing_at else None,
        steady_p99_s=steady_p99,
        replacement_p99_s=window_p99,
        replacement_window_s=(window[1] - window[0]) if window else None,
        seconds=ended - steady_from,
    )
    row.notes.append(describe(row.details, leak))
    row.check(
        "no request failed or lost",
        row.failed == 0 and row.lost == 0 and answer.status == 200,
        f"{row.failed} failed, {row.lost} lost; /healthz after: {answer.status or answer.error}",
    )
    if not leak:
        row.check("no worker replaced", replaced == 0, f"{replaced} replaced")
        return row
    row.check(
        "no worker replaced before the leak, at least one after it",
        replaced_before == 0 and replaced >= 1,
        f"{replaced_before} before, {replaced} in all",
    )
    row.check(
        f"p99 around the replacement at most {P99_FACTOR:g} x the steady p99",
        window_p99 is not None and steady_p99 and window_p99 <= P99_FACTOR * steady_p99,
        describe_p99(steady_p99, window_p99),
    )
    return row


class Leaker:
    """GET LEAK_PATH every LEAK_EVERY_S on fresh connections, until stopped or `most` sent."""

    def __init__(self, port, most):
        self.port, self.most = port, most
        self.outcomes = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._leak, daemon=True, name="leak")
        self._thread.start()

    def _leak(self):
        while len(self.outcomes) < self.most and not self._stopping.wait(LEAK_EVERY_S):
            self.outcomes.append(get(self.port, LEAK_PATH))

    def stop(self):
        self._stopping.set()
        self._thread.join()


def wait_for(condition, timeout):
    """Whether `condition()` became true within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def p99(outcomes, start, end):
    """The 99th percentile latency of the requests started from `start` to `end`, or None."""
    seconds = sorted(o.seconds for o in outcomes if start <= o.started <= end and o.status)
    if not seconds:
        return None
    return seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]


def describe_p99(steady, window):
    def ms(value):
        return "-" if value is None else f"{value * 1000:.0f} ms"

    ratio = f" ({window / steady:.2f} x)" if steady and window else ""
    return f"p99 steady {ms(steady)}, around the replacement {ms(window)}{ratio}"


def describe(details, leak):
    replaced = f"{details['workers_replaced']} worker(s) replaced"
    if not leak:
        return f"no leak: {replaced}"
    return (
        f"{details['leaked_mib']} MiB leaked: {replaced}, seen after "
        f"{details['replacement_seen_after_s'] or 0:.1f} s; "
        + describe_p99(details["steady_p99_s"], details["replacement_p99_s"])
    )
