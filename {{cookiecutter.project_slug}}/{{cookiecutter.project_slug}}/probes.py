"""Liveness and readiness probes, answered before any other middleware.

Orchestrators and load balancers call probes by IP address over plain HTTP.
Answering here, first in MIDDLEWARE, keeps them out of ALLOWED_HOSTS checks and
the HTTPS redirect, and keeps them cheap: no session, no CSRF, no URL routing.

- GET /healthz: the process is alive and serving. Never touches the database,
  so a database outage does not get healthy processes restarted.
- GET /readyz: the process can do useful work: the database answers. 503 with
  a short reason when it does not, so the load balancer routes elsewhere.
"""

from django.db import DatabaseError, connection
from django.http import JsonResponse

from config.gunicorn.database.middleware import database_unavailable_response


def healthz():
    return JsonResponse({"status": "ok"})


def readyz():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return database_unavailable_response(exc)
    return JsonResponse({"status": "ok"})


PROBES = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info.rstrip("/") or "/")
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return JsonResponse({"status": "method not allowed"}, status=405)
        return probe()
