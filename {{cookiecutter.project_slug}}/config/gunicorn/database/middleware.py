"""Answer 503, not 500, when the database cannot be reached or the pool is exhausted.

Both are conditions of the moment: a 503 with Retry-After tells load balancers
and clients to try again, and keeps tracebacks for real bugs out of the logs.
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
        return database_unavailable_response(exception)


def short_reason(exception):
    """The first line of a database error: enough to act on, short enough for a log line."""
    lines = str(exception).strip().splitlines() or [type(exception).__name__]
    return f"database: {lines[0]}"[:200]


def database_unavailable_response(exception):
    response = JsonResponse(
        {"status": "unavailable", "reason": short_reason(exception)}, status=503
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
