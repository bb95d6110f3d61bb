"""What a client must send, and how fast, before the application sees its request.

Checked once the request head has arrived (`refusal`), before anything is
answered, `100 Continue` included (gunicorn sent it, then a 413, so the client
started uploading what was then refused):

- HTTP/1.0 or HTTP/1.1 only: gunicorn answered `HTTP/1.7 200 OK` to an
  `HTTP/1.7` request; the asgi preset's parser already answered 400.
- A Host header on HTTP/1.1 (RFC 9112, 3.2): gunicorn served a request
  without one.
- A declared Content-Length of GUNICORN_MAX_REQUEST_BODY at most (10 MiB, as
  deploy/nginx/'s client_max_body_size): larger is a 413, the body unread.

The body, if any, is then read whole before the application runs
(`buffer_body`), as a buffering proxy does (nginx's proxy_request_buffering):
into memory up to SPOOL_LIMIT, a temporary file beyond. A chunked body stops
at GUNICORN_MAX_REQUEST_BODY with a 413: the Content-Length check alone let
300 MB of chunks through to a temporary file. A body must keep arriving:
BODY_STALL_TIMEOUT without a byte, or less than MIN_BODY_RATE on average past
that (the gevent and gthread workers enforce the average: see them), and the
client gets a 408 and the log one line, where a sync worker used to be killed
at its 30 s timeout with a 120-line traceback. The application never waits on
a client, and a body it does not read (a 405, a 403) is never left on the
socket, where closing would reset the connection and nginx answer 502 in
place of the response (sync did so to 21 of 30 10 MiB POSTs to /healthz).

Each refusal is one warning line in the log, and a response with
`Connection: close` followed by a lingering close (gunicorn's
close_graceful), so that the client reads the answer rather than a reset.

Cost: check_head reads the head's fields once, 0.8 us for a GET; a request
without a body reads nothing more.
"""

import io
import tempfile
from contextlib import suppress

from gunicorn import util

from config.gunicorn.environment import read_environment

# Load balancers and proxies send a request head at once; a client that takes longer than
# this to send one is not worth a connection (gevent and asgi close it; gthread and sync too).
REQUEST_HEAD_TIMEOUT = 10
MAX_REQUEST_BODY = read_environment().max_request_body
# nginx's client_body_timeout in deploy/nginx/: the longest wait for the next byte of a body.
BODY_STALL_TIMEOUT = 10
# 256 kbit/s: slower than any upload worth serving; a 10 MiB body gets 10 + 320 s.
MIN_BODY_RATE = 32 * 1024
SPOOL_LIMIT = 1024 * 1024
READ_SIZE = 64 * 1024
SUPPORTED_VERSIONS = ((1, 0), (1, 1))


class Refusal(Exception):
    """A request answered by the worker itself; `line` is what the client and the log read."""

    def __init__(self, status, reason, line):
        super().__init__(line)
        self.status, self.reason, self.line = status, reason, line


SLOW_HEAD = f"no complete request head within {REQUEST_HEAD_TIMEOUT} s"
SLOW_BODY = f"its body came slower than {MIN_BODY_RATE // 1024} KiB/s"
TOO_LARGE_BODY = f"request body over {MAX_REQUEST_BODY} bytes (GUNICORN_MAX_REQUEST_BODY)"


def check_head(req):
    """(the Refusal of a request whose head breaks the rules above, or None; its body).

    The body as `body_deadline` and `buffer_body` take it: 0 for none, its declared
    length, or None when it comes in chunks.
    """
    if req.version not in SUPPORTED_VERSIONS:
        version = ".".join(map(str, req.version))
        return Refusal(400, "Bad Request", f"HTTP/{version} is not supported: use HTTP/1.1"), 0
    host = None
    length = 0
    for name, value in req.headers:
        if name == "HOST":
            host = value
        elif name == "CONTENT-LENGTH":
            length = int(value)  # gunicorn's parser has checked it is a number
        elif name == "TRANSFER-ENCODING":
            length = None  # gunicorn's parser refuses it beside a Content-Length
    if host is None and req.version == (1, 1):
        return Refusal(400, "Bad Request", "HTTP/1.1 request without a Host header"), 0
    if length is not None and length > MAX_REQUEST_BODY:
        return Refusal(413, "Content Too Large", TOO_LARGE_BODY), 0
    return None, length


def body_deadline(length):
    """Seconds the whole body of `length` bytes (None: chunked, up to the limit) may take.

    A second more than the stall alone allows, so that a body that stops is answered as one
    that stopped.
    """
    expected = MAX_REQUEST_BODY if length is None else length
    return BODY_STALL_TIMEOUT + 1 + expected / MIN_BODY_RATE


def buffer_body(req, sock, length):
    """Read the body of `req` whole, so that the application reads it from here.

    `length`: its declared length, None when chunked. Raises Refusal (408 or 413).
    """
    send_100_continue(req, sock)
    buffered = io.BytesIO() if length is not None and length <= SPOOL_LIMIT else spooled_file()
    try:
        copy_body(req, sock, length, buffered)
    except Refusal:
        buffered.close()
        req.force_close()  # what is left of the body is never read
        raise
    buffered.seek(0)
    req.body = buffered


def release_body(req):
    """Close a body buffer_body read, once the request is answered (its file, if any, goes).

    gunicorn's parser then reads what is left of the body before the next request on the
    connection: there is nothing left.
    """
    req.body.close()
    req.body = io.BytesIO()


def copy_body(req, sock, length, buffered):
    body = "chunked body" if length is None else f"body of {length} bytes"
    received = 0
    sock.settimeout(BODY_STALL_TIMEOUT)
    try:
        while data := req.body.read(READ_SIZE):
            received += len(data)
            if received > MAX_REQUEST_BODY:
                raise Refusal(413, "Content Too Large", TOO_LARGE_BODY)
            buffered.write(data)
    except TimeoutError:
        raise Refusal(408, "Request Timeout", f"request {body} stopped arriving") from None
    finally:
        sock.settimeout(None)  # blocking again, as the worker had it
    if length is not None and received < length:  # the client left, or the worker cut it off
        raise Refusal(408, "Request Timeout", f"request {body} ended after {received} bytes")


def spooled_file():
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_LIMIT)


def send_100_continue(req, sock):
    """Tell a client that waits for it to send its body: once, here, not again later.

    gunicorn sends `100 Continue` when it builds the WSGI environ, after the body has
    been read here; its parser records the expectation in a private attribute, the one
    this kit reads (tests/test_workers.py checks it on the gunicorn versions claimed).
    """
    if getattr(req, "_expected_100_continue", False):
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        req._expected_100_continue = False


def refuse(log, sock, error):
    """Answer `error` (a Refusal) with Connection: close, log it in one line, close softly."""
    log_refusal(log, sock, error)
    with suppress(OSError):  # gone already
        util.write_error(sock, error.status, error.reason, error.line)
    util.close_graceful(sock)


def log_refusal(log, client, error):
    """The one line for a request the worker answered itself: `client`, a socket or address."""
    log.warning("%s %s to %s: %s", error.status, error.reason, client_address(client), error.line)


def log_closed(log, client, why):
    """The one line for a connection the worker closed: `client` is a socket or an address."""
    log.warning("Closed a connection from %s: %s", client_address(client), why)


def client_address(sock_or_address):
    """The client's IP address, for a log line, from its socket or gunicorn's `addr`."""
    address = sock_or_address
    if hasattr(sock_or_address, "getpeername"):
        try:
            address = sock_or_address.getpeername()
        except OSError:
            return "a client gone"
    return address[0] if isinstance(address, tuple) else "a local client"
