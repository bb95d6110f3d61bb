"""Workloads of a known cost, one per bottleneck a worker model has to cope with.

- io:       waits like a call to a slow upstream service (the process is idle).
- io-async: the same wait in an `async def` view (asyncio.sleep): what the asgi
            preset is for; the WSGI presets run it through asgiref, a loop per request.
- db:       waits inside PostgreSQL (a connection is held, the process is idle).
- cpu:      pure-Python work that holds the GIL (the process is busy).
- upstream: calls another service for real (settings.DEMO_UPSTREAM_URL, its
            /demo/io), then computes a little on the answer: the "call out, then
            compute" shape of most services, outbound connections included.

And two faults, on purpose:

- leak:     keeps memory it never frees, as a leaking view does (the worker's memory
            grows until the presets replace it: config/gunicorn/workers/recycle.py).
- error:    a bug, unhandled: a 500, for error reporting (SENTRY_DSN) to catch.
"""

import asyncio
import functools
import json
import time
from functools import wraps

import urllib3
from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.db import connection
from django.http import Http404, JsonResponse
from django.views.decorators.http import require_GET

MAX_WAIT_MS = 10_000  # well below gunicorn's default 30 s worker timeout
DEFAULT_WAIT_MS = 50
# Counting primes below 13,000 by trial division takes about 10 ms of CPU, Django included
# (9.5 ms for the count alone on the 2-CPU machine the README's numbers come from).
DEFAULT_PRIME_LIMIT = 13_000
MAX_PRIME_LIMIT = 500_000  # about 2 s: enough to show CPU saturation, bounded
# The work /demo/upstream does on each answer: about 1 ms of CPU here, a tenth of /demo/cpu.
UPSTREAM_PRIME_LIMIT = 2_500
# One pool of keep-alive connections per process, shared by its threads or greenlets
# (urllib3's pools are thread-safe). It holds up to UPSTREAM_CONNECTIONS idle connections
# to the upstream: as many as a gevent worker runs requests at once, so that under load
# each request reuses a connection instead of paying a TCP handshake. Created on first use,
# so never in a master that forks (the presets import Django there). No retries: a failed
# call is a failed request, as the load test must see it.
UPSTREAM_CONNECTIONS = 1000
UPSTREAM_TIMEOUT = urllib3.Timeout(connect=2.0, read=MAX_WAIT_MS / 1000 + 5)
DEFAULT_LEAK_KB = 64
MAX_LEAK_KB = 1024
# What /demo/leak keeps: nothing ever empties it but the end of the worker.
leaked = []


class BadParameter(ValueError):
    pass


def int_param(request, name, default, low, high):
    raw = request.GET.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise BadParameter(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return value


class UpstreamUnavailable(RuntimeError):
    pass


def demo_endpoint(view):
    """404 unless demo endpoints are enabled; 400 with a message on bad parameters.

    An `async def` view stays one: Django then runs it in the event loop under the asgi
    preset, and through asgiref (a loop per request, in a thread) under the WSGI presets.
    """

    def answer(result, started):
        result["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return JsonResponse(result)

    def refuse(exc):
        status = 400 if isinstance(exc, BadParameter) else 503
        return JsonResponse({"error": str(exc)}, status=status)

    if iscoroutinefunction(view):

        async def wrapper(request):
            if not settings.DEMO_ENDPOINTS:
                raise Http404("demo endpoints are disabled (DJANGO_DEMO_ENDPOINTS)")
            started = time.perf_counter()
            try:
                return answer(await view(request), started)
            except BadParameter as exc:
                return refuse(exc)

    else:

        def wrapper(request):
            if not settings.DEMO_ENDPOINTS:
                raise Http404("demo endpoints are disabled (DJANGO_DEMO_ENDPOINTS)")
            started = time.perf_counter()
            try:
                return answer(view(request), started)
            except (BadParameter, UpstreamUnavailable) as exc:
                return refuse(exc)

    return require_GET(wraps(view)(wrapper))


@demo_endpoint
def io_bound(request):
    ms = int_param(request, "ms", DEFAULT_WAIT_MS, 0, MAX_WAIT_MS)
    time.sleep(ms / 1000)
    return {"workload": "io", "ms": ms}


@demo_endpoint
async def io_async(request):
    ms = int_param(request, "ms", DEFAULT_WAIT_MS, 0, MAX_WAIT_MS)
    await asyncio.sleep(ms / 1000)
    return {"workload": "io-async", "ms": ms}


@demo_endpoint
def db_bound(request):
    ms = int_param(request, "ms", DEFAULT_WAIT_MS, 0, MAX_WAIT_MS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_sleep(%s)", [ms / 1000])
        else:
            # SQLite has no server to wait in: run a query, then wait as long.
            cursor.execute("SELECT 1")
            time.sleep(ms / 1000)
    return {"workload": "db", "ms": ms, "database": connection.vendor}


@demo_endpoint
def cpu_bound(request):
    n = int_param(request, "n", DEFAULT_PRIME_LIMIT, 2, MAX_PRIME_LIMIT)
    return {"workload": "cpu", "n": n, "primes": count_primes_below(n)}


@demo_endpoint
def upstream(request):
    ms = int_param(request, "ms", DEFAULT_WAIT_MS, 0, MAX_WAIT_MS)
    if not settings.DEMO_UPSTREAM_URL:
        raise UpstreamUnavailable("no upstream to call: set DJANGO_DEMO_UPSTREAM_URL")
    url = f"{settings.DEMO_UPSTREAM_URL.rstrip('/')}/demo/io?ms={ms}"
    try:
        response = upstream_pool().request("GET", url, timeout=UPSTREAM_TIMEOUT, retries=False)
    except urllib3.exceptions.HTTPError as exc:
        raise UpstreamUnavailable(f"the upstream did not answer: {exc}") from None
    if response.status != 200:
        raise UpstreamUnavailable(f"the upstream answered {response.status}")
    answer = json.loads(response.data)
    return {
        "workload": "upstream",
        "ms": ms,
        "upstream_ms": answer["elapsed_ms"],
        "primes": count_primes_below(UPSTREAM_PRIME_LIMIT),
    }


@functools.cache
def upstream_pool():
    return urllib3.PoolManager(maxsize=UPSTREAM_CONNECTIONS)


def count_primes_below(n):
    """Deliberately naive trial division: steady, GIL-holding CPU work."""
    count = 0
    for candidate in range(2, n):
        divisor = 2
        while divisor * divisor <= candidate:
            if candidate % divisor == 0:
                break
            divisor += 1
        else:
            count += 1
    return count


@demo_endpoint
def leak(request):
    kb = int_param(request, "kb", DEFAULT_LEAK_KB, 1, MAX_LEAK_KB)
    leaked.append(bytearray(kb * 1024))
    return {"workload": "leak", "kb": kb, "blocks_kept": len(leaked)}


class DemoError(RuntimeError):
    """What /demo/error raises: a bug, as error reporting sees one."""


@demo_endpoint
def error(request):
    raise DemoError("an unhandled error, on purpose (/demo/error)")
