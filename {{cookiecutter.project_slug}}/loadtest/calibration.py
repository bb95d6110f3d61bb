"""What each kind of request costs a preset when the server is otherwise idle.

The bound of a run (bounds.py) needs, for each kind of request, its time in
the server and the server's CPU time for it. Both are measured per preset, on
the server just started, before any load{% if cookiecutter.include_demo_endpoints %}:

- A demo request, by its calibration path: the same work without the wait
  (/demo/io?ms=0 for /demo/io?ms=50). One client sends it back to back, in
  three rounds of about 0.4 s; the server's CPU time over the count (psutil)
  is the CPU per request, and that plus the known wait is the service time:
  how long the request holds its worker, thread or greenlet. (Timed from the
  client, each request would also count the client's own work and, with the
  sync worker, a new connection: time the worker spends on the next request
  under load.) The least of the rounds counts: on a shared virtual machine
  the same request cost 10 to 18 ms of CPU from one second to the next, and
  the slow rounds are the machine's noise, not the request's cost. Without the
  wait, a round holds hundreds of requests: enough for the CPU clock's 10 ms
  ticks to be a small error. The first requests to each worker are not
  measured: they import what the views need and open database connections.
- A Locust file of yours, whose requests are unknown here: one Locust user for
  a few seconds. Its mean response time is the service time, its time between
  requests the cycle (your think time included), the server's CPU time over
  its requests the CPU per request.
{%- else %}. The requests of your Locust file
are unknown here, so it runs with one Locust user for a few seconds: its mean
response time is the service time, its time between requests the cycle (your
think time included), the server's CPU time over its requests the CPU per
request.
{%- endif %}
"""
{%- if cookiecutter.include_demo_endpoints %}

import http.client
import time
from urllib.parse import urlsplit
{%- endif %}

from .bounds import Cost
{%- if cookiecutter.include_demo_endpoints %}
from .sampling import tree_cpu_seconds

WARM_UP_REQUESTS = 20
ROUNDS = 3
ROUND_S = 0.4
MIN_REQUESTS = 10  # per round
MAX_REQUESTS = 1000
{%- endif %}


class CalibrationError(RuntimeError):
    """str() is one line: which request failed, and how."""
{%- if cookiecutter.include_demo_endpoints %}


def calibrate_request(server, request):
    """The Cost of a demo request on `server`, from its calibration path."""
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        for _ in range(WARM_UP_REQUESTS):
            get(connection, request.calibration_path)
        cpu_s = min(cpu_per_request(server, connection, request) for _ in range(ROUNDS))
    finally:
        connection.close()
    service_s = request.wait_ms / 1000 + cpu_s
    return Cost(service_s, cpu_s, cycle_s=service_s, uses_database=request.uses_database)


def cpu_per_request(server, connection, request):
    """One round: the server's CPU seconds per request, over about ROUND_S."""
    cpu_before = tree_cpu_seconds(server.process.pid)
    started = time.perf_counter()
    count = 0
    while count < MIN_REQUESTS or (
        time.perf_counter() - started < ROUND_S and count < MAX_REQUESTS
    ):
        get(connection, request.calibration_path)
        count += 1
    return (tree_cpu_seconds(server.process.pid) - cpu_before) / count


def get(connection, path):
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise CalibrationError(f"GET {path}: {exc or type(exc).__name__}") from None
    if response.status != 200:
        raise CalibrationError(f"GET {path} answered {response.status}")
    if response.will_close:
        connection.close()  # the next request opens a new connection (the sync worker)
{%- endif %}


def cost_from_locust_run(scenario, stats, server_cpu_s):
    """The Cost of a Locust file's requests, from its one-user run (generator.py)."""
    if not stats.requests:
        raise CalibrationError(f"{scenario}: one user sent no request: see its Locust log")
    if stats.failures:
        raise CalibrationError(
            f"{scenario}: {stats.failures} of {stats.requests} requests failed with one user: "
            "see its Locust report"
        )
    return Cost(
        service_s=stats.mean_ms / 1000,
        cpu_s=server_cpu_s / stats.requests,
        cycle_s=1 / stats.rps,
    )
