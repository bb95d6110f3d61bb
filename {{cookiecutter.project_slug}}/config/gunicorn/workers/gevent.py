"""The gevent preset's worker: gunicorn's, with every phase of a connection bounded in time.

A greenlet per connection costs little, and gunicorn's worker used to let any
of them wait as long as the client liked: 2,100 connections that each sent a
request then part of a second one (held up to the 75 s keep-alive), or a
1 MB body one byte long (held forever), made every /healthz wait 30 s. Here:

- idle, waiting for the next request on a kept-alive connection: up to the
  keep-alive timeout (75 s, longer than load balancers keep idle
  connections: see gevent.py);
- a request head, once its first byte has come (the first one from accept):
  REQUEST_HEAD_TIMEOUT, 10 s;
- a body: read whole before the view, 10 s at most without a byte and 32 KiB/s
  on average (limits.py), else a 408.

A worker that has `worker_connections` connections takes more, up to a tenth
again (SHED_RESERVE), rather than leaving them in the listen backlog where
probes would wait with them: each new one first makes room by closing the
longest idle kept-alive connection (a load balancer just opens another); when
none is idle, its request is answered 503 with Retry-After, unless it is a
probe (PROBE_PATHS), which is served.

A stopping or recycling worker closes its idle kept-alive connections at once
and answers the next request on the others with `Connection: close`, so no
client finds its connection closed under a request it has sent: a request that
arrives as its connection is being closed is served first.

Cost, measured against gunicorn's own gevent worker on /healthz (wrk, 100
connections, 2 workers): the same requests/s within the run-to-run noise.
"""

import time

import gevent
from gevent import monkey
from gevent.socket import wait_read
from gunicorn.workers.ggevent import GeventWorker

from config.gunicorn.observability.requestid import request_scope
from config.gunicorn.workers.lifecycle import Lifecycle
from config.gunicorn.workers.limits import (
    REQUEST_HEAD_TIMEOUT,
    Refusal,
    body_deadline,
    buffer_body,
    check_head,
    client_address,
    refuse,
    release_body,
)

PROBE_PATHS = ("/healthz", "/readyz")
# The system call itself, not gevent's cooperative version: asking whether a socket has
# data costs one call, where a wait through gevent's hub (even for data already there)
# cost 5 % of a worker's time on /healthz.
unpatched_select = monkey.get_original("select", "select")


class CloseIdle(Exception):
    """Raised in a connection's greenlet that waits, idle, for its next request."""


class Connection:
    """What the worker knows of one connection, held by the greenlet that serves it."""

    __slots__ = ("client", "shed", "unreader")

    def __init__(self, client, shed):
        self.client = client  # its address, for the log
        self.shed = shed  # taken over worker_connections: only probes are served
        self.unreader = None  # gunicorn's buffer of what the client sent, once a request came


class GuardedGeventWorker(Lifecycle, GeventWorker):
    model = "gevent"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # gunicorn's worker sizes its greenlet pool from this: room for the connections shed.
        self.worker_connections = self.cfg.worker_connections + shed_reserve(self.cfg)
        self.connections = {}  # greenlet: Connection
        self.idle = {}  # greenlet: the time it began waiting; the longest first

    def handle(self, listener, client, addr):
        greenlet = gevent.getcurrent()
        shed = len(self.connections) >= self.cfg.worker_connections and not self.close_idle(1)
        self.connections[greenlet] = Connection(client_address(addr), shed)
        try:
            super().handle(listener, client, addr)
        finally:
            del self.connections[greenlet]

    def timeout_ctx(self):
        # gunicorn reads each request head within this.
        return RequestHeadWait(self, self.connections[gevent.getcurrent()])

    @request_scope  # the request ID, and its count in flight: observability/
    def handle_request(self, listener_name, req, sock, addr):
        connection = self.connections[gevent.getcurrent()]
        connection.unreader = req.unreader
        try:
            error, body_length = check_head(req)
            if error is None and connection.shed and req.path not in PROBE_PATHS:
                error = Refusal(503, "Service Unavailable", "worker full: connection shed")
            if error is not None:
                raise error
            if body_length != 0:
                timeout = Refusal(408, "Request Timeout", "request body too slow")
                with gevent.Timeout(body_deadline(body_length), timeout):
                    buffer_body(req, sock, body_length)
        except Refusal as error:
            refuse(self.log, sock, error)
            raise StopIteration() from None  # gunicorn's worker closes the connection
        try:
            super().handle_request(listener_name, req, sock, addr)
        finally:
            if body_length != 0:
                release_body(req)

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        gevent.spawn(self.close_idle)  # a signal handler must not switch greenlets itself

    def stop_accepting(self):
        self.close_idle()

    def close_idle(self, count=None):
        """Close `count` idle kept-alive connections (all: None), the longest idle first.

        Returns how many were asked to close.
        """
        chosen = list(self.idle)[:count]
        for greenlet in chosen:
            del self.idle[greenlet]
            greenlet.kill(CloseIdle, block=False)
        return len(chosen)


class RequestHeadWait:
    """How long gunicorn's worker waits for a request head on one connection.

    The first request's head must arrive within REQUEST_HEAD_TIMEOUT of the accept.
    After a response, the connection is idle until the client sends again: up to the
    keep-alive timeout, or until the worker closes it (CloseIdle); the head then gets
    REQUEST_HEAD_TIMEOUT from its first byte. A timeout ends the connection quietly.
    """

    def __init__(self, worker, connection):
        self.worker, self.connection = worker, connection
        self.timer = None

    def __enter__(self):
        unreader = self.connection.unreader
        if unreader is not None and not unreader.buf.tell():  # nothing sent ahead
            self.wait_while_idle(unreader.sock.fileno())
        self.timer = gevent.Timeout.start_new(REQUEST_HEAD_TIMEOUT, False)
        return self

    def __exit__(self, kind, error, traceback):
        self.timer.close()
        if error is not self.timer:
            return False
        self.worker.log.warning(
            "Closed a connection from %s: no complete request head within %s s",
            self.connection.client,
            REQUEST_HEAD_TIMEOUT,
        )
        return True  # gunicorn's worker then closes the connection quietly

    def wait_while_idle(self, fileno):
        if readable(fileno):
            return  # the next request is here already
        worker = self.worker
        if worker.alive:
            greenlet = gevent.getcurrent()
            worker.idle[greenlet] = time.monotonic()
            try:
                wait_read(fileno, timeout=worker.cfg.keepalive, timeout_exc=StopIteration)
                return
            except CloseIdle:
                pass
            finally:
                worker.idle.pop(greenlet, None)
        # Closing: unless a request has just arrived, which is served (with Connection: close).
        if not readable(fileno):
            raise StopIteration("idle connection closed")


def readable(fileno):
    return bool(unpatched_select([fileno], [], [], 0)[0])


def shed_reserve(cfg):
    """Connections a worker takes beyond worker_connections, to shed or serve probes on."""
    return max(10, cfg.worker_connections // 10)
