"""Answer 503, not 500, when the database cannot be reached or the pool is exhausted.

Both are conditions of the moment: a 503 with Retry-After tells load balancers
and clients to try again, and keeps tracebacks for real bugs out of the logs.
The client is told only that the database is unavailable; the log line says
why (the driver's message names the host, port, role and database).

Only those. Django raises OperationalError for more than an unreachable
database: a deadlock, a serialization failure, a statement timeout, a lock
timeout are errors of this request's transaction, for the code to retry or
fix, and they go on as unhandled exceptions: a 500, logged with its traceback
and seen by error reporting (Django's got_request_exception, which Sentry's
integration listens to). They are told apart by PostgreSQL's SQLSTATE: an
error without one is the driver's own (connecting failed, the connection was
lost, the pool's wait ran out), and a few classes say the server cannot take
the connection (UNAVAILABLE_SQLSTATES).
"""

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import OperationalError
from django.http import JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
# SQLSTATE prefixes of "the database cannot be used now": connection exceptions (08),
# authorization (28: a password being rotated), a missing database (3D000), too many
# connections (53300), the server shutting down or starting (57P01 to 57P03).
UNAVAILABLE_SQLSTATES = ("08", "28", "3D000", "53300", "57P01", "57P02", "57P03")


class DatabaseUnavailableMiddleware:
    # Async-capable as well: a sync-only middleware makes Django hop to a thread and
    # back on every request under ASGI. Django runs process_exception in a thread there,
    # which only a failed request pays.
    sync_capable = async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        return self.get_response(request)  # under ASGI, the coroutine Django awaits

    def process_exception(self, request, exception):
        if not (isinstance(exception, OperationalError) and unavailable(exception)):
            return None  # a 500, with its traceback, for error reporting
        logger.warning("database unavailable for %s: %s", request.path, short_reason(exception))
        return database_unavailable_response()


def sqlstate(exception):
    """PostgreSQL's SQLSTATE of a database error (Django's wraps the driver's), or None."""
    for error in (exception, exception.__cause__):
        # psycopg 3 calls it sqlstate, psycopg2 pgcode
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if code:
            return code
    return None


def unavailable(exception):
    """Whether an OperationalError says the database cannot be used now, not this request."""
    code = sqlstate(exception)
    return code is None or code.startswith(UNAVAILABLE_SQLSTATES)


def first_line(exception):
    """The first line of an error's message, at most 200 characters."""
    lines = str(exception).strip().splitlines() or [type(exception).__name__]
    return lines[0][:200]


def short_reason(exception):
    """The first line of a database error: enough to act on, short enough for a log line."""
    return f"database: {first_line(exception)}"[:200]


def database_unavailable_response():
    response = JsonResponse({"status": "unavailable", "reason": "database unavailable"}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    # Logged once, at WARNING, by the caller: not again by Django as an ERROR (its own marker,
    # see django.utils.log.log_response).
    response._has_been_logged = True
    return response
