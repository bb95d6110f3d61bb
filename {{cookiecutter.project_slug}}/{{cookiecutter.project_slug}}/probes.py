"""Liveness and readiness probes, answered before any other middleware.

Orchestrators and load balancers call probes by IP address over plain HTTP.
Answering here, first in MIDDLEWARE, keeps them out of ALLOWED_HOSTS checks and
the HTTPS redirect, and keeps them cheap: no session, no CSRF, no URL routing.

- GET /healthz: the process is alive and serving. Never touches the database,
  so a database outage does not get healthy processes restarted.
- GET /readyz: the process can do useful work: the database answers. 503 when
  it does not, so the load balancer routes elsewhere, within READY_TIMEOUT_S:
  the probe opens a connection of its own, with its own connect timeout,
  instead of waiting behind the requests for a pooled one (up to
  DJANGO_DB_POOL_TIMEOUT, 10 s). That costs a connection for a few
  milliseconds per probe (one more than the budget at that moment), and keeps
  a busy pool from taking a healthy instance out of the load balancer. The
  client is told only "database unavailable"; the log says why.
"""

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.db import connection
from django.http import JsonResponse

from config.gunicorn.database.middleware import database_unavailable_response, short_reason
from config.gunicorn.database.verify import connect_once

logger = logging.getLogger(__name__)

# Under the 3 s or more that orchestrators give a probe by default (timeoutSeconds 1 in
# Kubernetes is too tight for a new connection: set 3 there, as deploy/kubernetes does).
READY_TIMEOUT_S = 2


def healthz():
    return JsonResponse({"status": "ok"})


def readyz():
    try:
        database_answers()
    except Exception as exc:  # whatever it is, this instance is not ready
        logger.warning("not ready: %s", short_reason(exc))
        return database_unavailable_response()
    return JsonResponse({"status": "ok"})


def database_answers():
    """Run SELECT 1 on a connection of the probe's own, bounded by READY_TIMEOUT_S."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:  # SQLite: a file, nothing to wait for
            cursor.execute("SELECT 1")
        return
    connect_once(connection, READY_TIMEOUT_S)


PROBES = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    """Sync under WSGI, async under ASGI (no thread hop but for /readyz's query)."""

    sync_capable = async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        probe = PROBES.get(request.path_info.rstrip("/") or "/")
        if self.is_async:
            return self.answer_async(request, probe)
        if probe is None:
            return self.get_response(request)
        return refused(request) or probe()

    async def answer_async(self, request, probe):
        if probe is None:
            return await self.get_response(request)
        if probe is healthz:  # touches nothing: answered in the event loop
            return refused(request) or healthz()
        return refused(request) or await sync_to_async(probe)()


def refused(request):
    """405 for a probe called with another method than GET or HEAD, else None."""
    if request.method not in ("GET", "HEAD"):
        return JsonResponse({"status": "method not allowed"}, status=405)
    return None
