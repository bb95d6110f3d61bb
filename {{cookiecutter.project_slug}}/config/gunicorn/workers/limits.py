"""How much of a client's request the workers take on before the application sees it.

REQUEST_HEAD_TIMEOUT bounds the wait for a connection's first request head
(gevent and asgi: see __init__.py). MAX_REQUEST_BODY (GUNICORN_MAX_REQUEST_BODY,
10 MiB by default, as deploy/nginx/'s client_max_body_size) refuses a declared
Content-Length above it with a 413 before the body is read: gunicorn's asgi
worker otherwise reads any body, 50 MB included, and Django spools it to /tmp
before the host or the path is checked; the gevent worker reads what the
application left unread to find the next request on the connection. A body
sent in chunks, with no Content-Length, is read as it comes, and Django's own
limits (DATA_UPLOAD_MAX_MEMORY_SIZE) apply to it.

A body the application did not read (a 405, a 403, a view that never looks) is
read to its end after the response, up to MAX_REQUEST_BODY and for
UNREAD_BODY_TIMEOUT at most, before the connection closes: closing a socket
with data still to read resets it, and nginx, still sending that body, then
answers 502 in place of the response. Measured behind deploy/nginx/, a 10 MiB
POST to /healthz: sync answered 502 to 21 of 30 and gthread to 3 of 10; every
preset 405 to 30 of 30 with this. Django's runserver does the same.
"""

import time

from gunicorn.http.errors import ParseException

from config.gunicorn.environment import read_environment

# Load balancers and proxies send a request head at once; a client that takes longer than
# this to send one is not worth a connection.
REQUEST_HEAD_TIMEOUT = 10
MAX_REQUEST_BODY = read_environment().max_request_body
TOO_LARGE_BODY = f"Request body over {MAX_REQUEST_BODY} bytes (GUNICORN_MAX_REQUEST_BODY)\n"
# A proxy next door sends 10 MiB in milliseconds; a client still sending after this long
# is not worth a worker, and gets its connection closed.
UNREAD_BODY_TIMEOUT = 5
READ_SIZE = 64 * 1024


def too_large(content_length):
    """Whether a request declaring `content_length` (a str, bytes, int or None) is refused."""
    try:
        return int(content_length or 0) > MAX_REQUEST_BODY
    except ValueError:
        return False  # gunicorn's parsers answer a malformed length with a 400 themselves


def refuse_large_bodies(application):
    """The WSGI `application`, answering 413 to a declared body over MAX_REQUEST_BODY."""

    def guarded(environ, start_response):
        if too_large(environ.get("CONTENT_LENGTH")):
            body = TOO_LARGE_BODY.encode()
            start_response(
                "413 Content Too Large",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return application(environ, start_response)

    return guarded


class RefuseLargeBodies:
    """A WSGI worker's part: the application, wrapped by refuse_large_bodies()."""

    def load_wsgi(self):
        super().load_wsgi()
        self.wsgi = refuse_large_bodies(self.wsgi)


def content_length(request):
    """The Content-Length header of a request parsed by gunicorn's WSGI workers, or None."""
    return next((value for name, value in request.headers if name == "CONTENT-LENGTH"), None)


def read_unread_body(request, sock):
    """Read what the application left of `request`'s body; whether all of it was read.

    A body refused as too large is never read, and neither is more than
    MAX_REQUEST_BODY of a chunked one nor anything after UNREAD_BODY_TIMEOUT:
    the connection is then closed with the rest unread.
    """
    if too_large(content_length(request)):
        return False
    deadline = time.monotonic() + UNREAD_BODY_TIMEOUT
    allowance = MAX_REQUEST_BODY
    try:
        while allowance >= 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.settimeout(remaining)
            data = request.body.read(READ_SIZE)
            if not data:
                return True
            allowance -= len(data)
        return False
    except (OSError, ParseException):  # gone, stalled (a timeout) or a malformed chunk
        return False
    finally:
        sock.settimeout(None)  # blocking again, as the worker had it
