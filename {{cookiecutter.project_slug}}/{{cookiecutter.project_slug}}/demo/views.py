"""Three workloads, one per bottleneck a worker model has to cope with.

- io:  waits like a call to a slow upstream service (the process is idle).
- db:  waits inside PostgreSQL (a connection is held, the process is idle).
- cpu: pure-Python work that holds the GIL (the process is busy).
- error: a bug, unhandled: a 500, for error reporting (SENTRY_DSN) to catch.
"""

import time
from functools import wraps

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


def demo_endpoint(view):
    """404 unless demo endpoints are enabled; 400 with a message on bad parameters."""

    @require_GET
    @wraps(view)
    def wrapper(request):
        if not settings.DEMO_ENDPOINTS:
            raise Http404("demo endpoints are disabled (DJANGO_DEMO_ENDPOINTS)")
        started = time.perf_counter()
        try:
            result = view(request)
        except BadParameter as exc:
            return JsonResponse({"error": str(exc)}, status=400)
        result["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return JsonResponse(result)

    return wrapper


@demo_endpoint
def io_bound(request):
    ms = int_param(request, "ms", DEFAULT_WAIT_MS, 0, MAX_WAIT_MS)
    time.sleep(ms / 1000)
    return {"workload": "io", "ms": ms}


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


class DemoError(RuntimeError):
    """What /demo/error raises: a bug, as error reporting sees one."""


@demo_endpoint
def error(request):
    raise DemoError("an unhandled error, on purpose (/demo/error)")
