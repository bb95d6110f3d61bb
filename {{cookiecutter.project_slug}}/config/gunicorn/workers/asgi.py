"""The asgi preset's worker: gunicorn's, with the same limits on requests as the others.

gunicorn's ASGI protocol is one class of 2,800 lines with no setting to extend
it, so the limits live where ASGI has public seams instead:

- an ASGI middleware around the application (`guard`) applies limits.py's
  rules to each request: HTTP version and Host, the declared body size (413
  before anything is read: gunicorn's worker otherwise hands any body, 300 MB
  of chunks included, to Django, which spools it to /tmp before routing it),
  the body read whole within its time limits (408), a chunked body stopped at
  the limit (413); it also turns an absolute-form request target
  (`GET http://host/path`) into its path, as gunicorn's WSGI parser does
  (gunicorn 27's ASGI parser gave Django `http://host/path` as the path, which
  it then put after the host in redirects), and logs a client that left
  before its response as 499, as nginx does, where gunicorn logged a 500;
- the connection (`HeadDeadlineProtocol`, through asyncio's public Protocol
  methods) is closed when its first request head has not arrived within
  REQUEST_HEAD_TIMEOUT: gunicorn's waits for it forever (it bounds later heads
  with its keep-alive timeout).

A worker being replaced (recycle.py) stops accepting, then answers every
request with `Connection: close` and stops once its clients have gone. Not at
once, as a SIGTERM stops it: gunicorn decides at a response's head whether its
connection stays open, and closes it after the response's end if the worker
has stopped meanwhile, so a response under way as the worker stopped said
keep-alive and then its connection closed under the client's next request
(one request of 8 clients' lost in a CI run). It stops once no connection is
left, or once no response that promised keep-alive is under way and
STOP_LINGER_S has passed (a client that stays idle).

A stop waits for the requests under way. gunicorn's graceful stop waits for
its connections only, and a request outlives its connection: gunicorn gives it
asgi_disconnect_grace_period (3 s) to end after its client has left. A stop
right after clients left (wrk ending, then a SIGTERM) cancelled such requests
as the worker exited: in a CI run, Django's "Task exception was never
retrieved" tracebacks. The guard counts each request among the worker's
connections (`nr_conns`, all gunicorn's graceful stop reads) until it ends.

Cost: the middleware adds 2.3 us to a request without a body. It also runs each
request's sync code in a thread kept from one request to the next (threads.py).

A stop is seen at once. gunicorn's serving loop looks at `alive` once a
second: each worker took 1.0 s to begin stopping after a SIGTERM, and a stop
during boot took 1.3 to 1.6 s here, over 5 s under load in CI. The stop
signals also cancel the loop's task, which gunicorn's loop takes as a stop: it
goes to its graceful shutdown at once.

What stays private is one module attribute: gunicorn's worker builds its
connections from `gunicorn.workers.gasgi.ASGIProtocol`, with no setting to name
another class (tests/test_workers.py checks it on the gunicorn versions claimed).
"""

import asyncio
import os
from urllib.parse import urlsplit

from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers import gasgi

from config.gunicorn.accesslog import status_instead
from config.gunicorn.workers.lifecycle import STOP_LINGER_S, Lifecycle, release_stop_signals
from config.gunicorn.workers.limits import (
    BODY_STALL_TIMEOUT,
    MAX_REQUEST_BODY,
    REQUEST_HEAD_TIMEOUT,
    SLOW_HEAD,
    TOO_LARGE_BODY,
    Refusal,
    body_deadline,
    log_closed,
    log_refusal,
    spooled_file,
)
from config.gunicorn.workers.threads import RequestThreads

ABSOLUTE_FORM = (b"http://", b"https://")
CLOSE = (b"connection", b"close")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before the response
HEAD_END = b"\r\n\r\n"


class GuardedASGIWorker(Lifecycle, gasgi.ASGIWorker):
    model = "asgi"
    replacement_began = None
    serving = None  # the task of gunicorn's serving loop, while it loops

    def load_wsgi(self):
        super().load_wsgi()
        self.traffic = Traffic(self)
        self.asgi = guard(self.asgi, self.log, self.traffic, RequestThreads())

    def release_stop_signals_once_handled(self):
        self.loop.call_soon(release_stop_signals)  # uvloop drops signals before it runs

    def stop_for_replacement(self):
        for server in self.servers:
            server.close()  # the listening socket stays open in the other workers
        self.traffic.closing = True
        self.replacement_began = self.loop.time()

    def notify(self):
        # Called every second by gunicorn's serving loop, which then leaves if the master
        # has gone: a cancel then would land in its shutdown.
        self.serving = asyncio.current_task() if self.ppid == os.getppid() else None
        super().notify()
        if self.recycling and self.alive and self.clients_gone():
            self.alive = False

    def handle_exit_signal(self):
        self.stop_serving_at_once(super().handle_exit_signal)

    def handle_quit_signal(self):
        self.stop_serving_at_once(super().handle_quit_signal)

    def stop_serving_at_once(self, handle_signal):
        looping = self.alive and self.serving is not None
        handle_signal()
        if looping and not self.alive:
            self.serving.cancel()  # its one-second sleep ends: it stops now

    def clients_gone(self):
        lingered = self.loop.time() - self.replacement_began >= STOP_LINGER_S
        return self.nr_conns == 0 or (lingered and self.traffic.promised == 0)

    def run(self):
        gasgi.ASGIProtocol = HeadDeadlineProtocol  # in this worker process only
        super().run()


class HeadDeadlineProtocol(ASGIProtocol):
    """gunicorn's connection, closed if its first request head takes over REQUEST_HEAD_TIMEOUT."""

    head_deadline = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self.head_tail = b""
        self.head_deadline = self.worker.loop.call_later(REQUEST_HEAD_TIMEOUT, self.head_too_slow)

    def head_too_slow(self):
        self.head_deadline = None
        log_closed(self.log, self.transport.get_extra_info("peername"), SLOW_HEAD)
        self.transport.close()

    def data_received(self, data):
        if self.head_deadline is not None:
            seen = self.head_tail + data
            if HEAD_END in seen:
                self.head_deadline.cancel()
                self.head_deadline = None
            else:
                self.head_tail = seen[-(len(HEAD_END) - 1) :]
        super().data_received(data)

    def connection_lost(self, exc):
        if self.head_deadline is not None:
            self.head_deadline.cancel()
        super().connection_lost(exc)


class Traffic:
    """What a stopping worker waits for, as the guard sees the requests go by."""

    def __init__(self, worker):
        self.worker = worker  # its nr_conns: what gunicorn's graceful stop waits for
        self.promised = 0  # responses under way whose head said their connection stays open
        self.closing = False  # from now on, every response says Connection: close

    def request_began(self):
        self.worker.nr_conns += 1

    def request_ended(self):
        self.worker.nr_conns -= 1


def guard(application, log, traffic, threads):
    """The ASGI `application`, with limits.py's rules applied to each HTTP request, its
    sync code run in one of `threads`."""

    async def guarded(scope, receive, send):
        if scope["type"] != "http":
            return await application(scope, receive, send)
        traffic.request_began()
        try:
            async with threads.lent():
                await guarded_request(scope, receive, send)
        finally:
            traffic.request_ended()

    async def guarded_request(scope, receive, send):
        try:
            length = check_scope(scope)
            if length != 0:
                receive = await buffered_body(receive, length)
        except Refusal as error:
            log_refusal(log, scope.get("client"), error)
            return await respond(send, error)
        if scope["raw_path"].lower().startswith(ABSOLUTE_FORM):
            # RFC 9112 3.2.2: a proxy's absolute-form target; the path is what follows the host.
            scope["raw_path"] = urlsplit(scope["raw_path"]).path or b"/"
            scope["path"] = urlsplit(scope["path"]).path or "/"
        await serve_noting_departures(application, scope, receive, send, traffic)

    return guarded


def check_scope(scope):
    """The body's length as limits.check_head gives it (0, a length, None: chunked).

    Raises Refusal where limits.check_head would refuse.
    """
    if scope["http_version"] not in ("1.0", "1.1"):
        raise Refusal(400, "Bad Request", f"HTTP/{scope['http_version']} is not supported")
    host = None
    length = 0
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
        elif name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            length = None
    if host is None and scope["http_version"] == "1.1":
        raise Refusal(400, "Bad Request", "HTTP/1.1 request without a Host header")
    if length is not None and length > MAX_REQUEST_BODY:
        raise Refusal(413, "Content Too Large", TOO_LARGE_BODY)
    return length


async def buffered_body(receive, length):
    """Read the whole body within its time limits; a `receive` that gives it back at once."""
    body = spooled_file()
    try:
        await copy_body(receive, length, body)
    except Refusal:
        body.close()
        raise
    body.seek(0)
    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await receive()  # what follows: a disconnect
        replayed = True
        with body:
            return {"type": "http.request", "body": body.read(), "more_body": False}

    return replay


async def copy_body(receive, length, body):
    try:
        await asyncio.wait_for(copy_chunks(receive, body), body_deadline(length))
    except asyncio.TimeoutError:  # noqa: UP041 (Python 3.10: not yet TimeoutError)
        raise Refusal(408, "Request Timeout", "request body stopped arriving") from None


async def copy_chunks(receive, body):
    received = 0
    while True:
        message = await asyncio.wait_for(receive(), BODY_STALL_TIMEOUT)
        if message["type"] == "http.disconnect":
            raise Refusal(408, "Request Timeout", "client left while sending its body")
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > MAX_REQUEST_BODY:
            raise Refusal(413, "Content Too Large", TOO_LARGE_BODY)
        body.write(chunk)
        if not message.get("more_body", False):
            return


async def respond(send, error):
    body = f"{error.line}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
                CLOSE,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def serve_noting_departures(application, scope, receive, send, traffic):
    """Run the application; a client that left before any response is logged as a 499.

    Django cancels a view whose client has gone (http.disconnect) and sends nothing;
    gunicorn then logged the request as "500 0", though nothing failed. The responses
    that promise keep-alive are counted in `traffic.promised` until their end.
    """
    started = False
    left = False
    promised = False

    async def noting_receive():
        nonlocal left
        message = await receive()
        left = left or message["type"] == "http.disconnect"
        return message

    async def noting_send(message):
        nonlocal started, promised
        if message["type"] == "http.response.start":
            started = True
            if traffic.closing:
                message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
            else:
                promised = True
                traffic.promised += 1
        await send(message)
        if promised and message["type"] == "http.response.body" and not message.get("more_body"):
            promised = False
            traffic.promised -= 1

    try:
        await application(scope, noting_receive, noting_send)
    finally:
        if promised:
            traffic.promised -= 1
    if left and not started:
        status_instead.set(CLIENT_CLOSED_REQUEST)  # for the access line
        # For the metrics (observability/asgi.py); gunicorn writes nothing.
        await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST})
        await send({"type": "http.response.body", "body": b""})
