"""busy-liveness: 500 clients saturate /demo/io?ms=50 while liveness is probed.

An orchestrator that probes liveness on the service's port restarts a pod that
is only busy: under `wrk -c500` the sync preset timed out 2 of 24 /healthz
probes at 5 s. The presets answer /livez on METRICS_PORT, from a process beside
the master that reads the workers' heartbeats, not from the busy workers
(config/gunicorn/observability/). Every /livez, probed every 0.5 s with a 2 s
timeout, must answer 200 within a second, from the first 200 it gives after the
workers boot; /healthz on the service port, probed alike with a 10 s timeout, is
reported as the contrast.

The load comes from wrk when it is on PATH (500 Python threads would saturate
these 2 CPUs themselves), else from clients.py's threads. Through nginx, the
load and /healthz go through the project's front; /livez stays on METRICS_PORT.
"""

import re
import shutil
import subprocess
import time
from collections import Counter
from contextlib import contextmanager

from .. import nginx
from ..clients import Load, get
from ..report import Row, in_seconds
from .context import STEADY_PATH, serving

CLIENTS = 500
PROBE_INTERVAL_S = 0.5
LIVEZ_TIMEOUT_S = 2.0
LIVEZ_WITHIN_S = 1.0
HEALTHZ_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 5.0


def busy_liveness(preset, context):
    rows = []
    with serving(preset, context, "busy-liveness") as (server, _):
        row = Row("busy-liveness", preset)
        rows.append(saturate(server.port, server.metrics_port, row, context))
        rows.append(
            nginx.row_through_nginx(
                "busy-liveness",
                preset,
                server,
                context,
                lambda port, row: saturate(port, server.metrics_port, row, context),
            )
        )
    return rows


def saturate(port, metrics_port, row, context):
    seconds = context.duration(10.0, 5.0)
    row.details["livez_ready_s"] = livez_ready(metrics_port)
    with (
        load(port, seconds) as generator,
        Load(metrics_port, "/livez", 1, PROBE_INTERVAL_S, LIVEZ_TIMEOUT_S) as livez,
        Load(port, "/healthz", 1, PROBE_INTERVAL_S, HEALTHZ_TIMEOUT_S) as healthz,
    ):
        time.sleep(seconds)
    row.count(livez.outcomes)
    late = [
        probe for probe in livez.outcomes if probe.status != 200 or probe.seconds > LIVEZ_WITHIN_S
    ]
    slowest_livez = max((probe.seconds for probe in livez.outcomes), default=None)
    slowest_healthz = max((probe.seconds for probe in healthz.outcomes), default=None)
    healthz_unanswered = sum(1 for probe in healthz.outcomes if probe.status != 200)
    row.details.update(
        clients=CLIENTS,
        seconds=seconds,
        load=generator,
        livez_late=len(late),
        livez_statuses=dict(Counter(str(probe.status or probe.error) for probe in livez.outcomes)),
        livez_slowest_s=slowest_livez,
        healthz_probes=len(healthz.outcomes),
        healthz_unanswered=healthz_unanswered,
        healthz_slowest_s=slowest_healthz,
    )
    row.notes.append(
        f"{generator['requests']} requests by {generator['by']}; /livez slowest "
        f"{in_seconds(slowest_livez)}; /healthz slowest {in_seconds(slowest_healthz)}, "
        f"{healthz_unanswered} of {len(healthz.outcomes)} not 200"
    )
    row.check(
        f"every /livez answered 200 within {LIVEZ_WITHIN_S:g} s",
        len(livez.outcomes) >= seconds / PROBE_INTERVAL_S - 2 and not late,
        f"{len(late)} of {len(livez.outcomes)} late or not 200, "
        f"the slowest in {in_seconds(slowest_livez)}",
    )
    return row


def livez_ready(metrics_port):
    """Seconds until /livez first answers 200, or None: it says 503 until the master's loop
    has read a worker's heartbeat, which a probe right after the boot may precede."""
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if get(metrics_port, "/livez", timeout=LIVEZ_TIMEOUT_S).status == 200:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


@contextmanager
def load(port, seconds):
    """CLIENTS connections on STEADY_PATH for `seconds`; yields a dict filled in at the end."""
    generator = {"by": None, "requests": None}
    wrk = shutil.which("wrk")
    if wrk is None:
        generator["by"] = f"{CLIENTS} threads"
        with Load(port, STEADY_PATH, CLIENTS) as threads:
            yield generator
        generator["requests"] = len(threads.outcomes)
        return
    generator["by"] = "wrk"
    command = [wrk, "-t2", f"-c{CLIENTS}", f"-d{seconds:g}s", "--timeout", "10s"]
    process = subprocess.Popen(
        [*command, f"http://127.0.0.1:{port}{STEADY_PATH}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield generator
        output = process.communicate(timeout=seconds + 15)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    requests = re.search(r"(\d+) requests in", output)
    generator["requests"] = int(requests.group(1)) if requests else None
    errors = re.search(r"Socket errors: (.*)", output)
    generator["socket_errors"] = errors.group(1) if errors else None
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    generator["non_2xx"] = int(non_2xx.group(1)) if non_2xx else 0
