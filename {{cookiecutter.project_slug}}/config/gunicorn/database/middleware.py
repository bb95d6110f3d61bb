"""Answer 503, not 500, when the database cannot be reached or the pool is exhausted.

Both are conditions of the moment: a 503 with Retry-After tells load balancers
and clients to try again, and keeps tracebacks for real bugs out of the logs.
The client is told only that the database is unavailable; the log line says
why (the driver's message names the host, port, role and database).
"""

import logging

from django.db import OperationalError
from django.http import JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError):
            return None
        logger.warning("database unavailable for %s: %s", request.path, short_reason(exception))
        return database_unavailable_response()


def short_reason(exception):
    """The first line of a database error: enough to act on, short enough for a log line."""
    lines = str(exception).strip().splitlines() or [type(exception).__name__]
    return f"database: {lines[0]}"[:200]


def database_unavailable_response():
    response = JsonResponse({"status": "unavailable", "reason": "database unavailable"}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    # Logged once, at WARNING, by the caller: not again by Django as an ERROR (its own marker,
    # see django.utils.log.log_response).
    response._has_been_logged = True
    return response
