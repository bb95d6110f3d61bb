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
  on average (limits.py), else a 408;
- requests that come faster than they are served, on one connection: after
  TURN_S (1 ms) of them without a wait, the others get a turn.

A worker that has `worker_connections` connections still accepts as many
again, rather than leaving them in the listen backlog, where probes would wait
behind them (gunicorn's worker stops accepting once its greenlet pool is full). Each
new one first makes room by closing the longest-idle kept-alive connection (a
load balancer just opens another); when none is idle, it is shed: it gets
SHED_HEAD_TIMEOUT (1 s) for its request head, then one answer and a close: a
probe (PROBE_PATHS) is served, anything else is a 503. 80 connections held on
a worker of 50: /healthz answered at once, where it waited 9.5 s for the held
ones to time out.

A stopping or recycling worker answers the next request on each kept-alive
connection with `Connection: close`, and closes a connection that stays idle
for STOP_LINGER_S (2 s), rather than waiting out its keep-alive: a client that
sends its next request as the worker stops gets an answer, not its connection
closed under the request (8 clients on /demo/leak while workers were replaced:
one such request lost without the linger, none with it).

Cost, in CPU time per request on /healthz against gunicorn's own gevent worker
with as many workers, both served at once on one CPU, a wrk each on the other,
medians of 5 rounds of 8 s: 219 us against 226 (103 % of stock's throughput a
CPU; 86 % before the worker wrote its responses in fewer system calls and read
its settings as attributes: responses.py, lifecycle.py). What this worker and
the observability add to each request, each piece taken out alone (two copies
of the preset differed by 1.4 %, the noise): its head waits 9 us, its request
scope and ID 6, the loop monitor 5 and the metrics 4 (observability/), the
access line 9 to 14 (accesslog.py). On /demo/io?ms=50, 599 against 658. A first
version waited through the hub even when the next request was there already: 5
% of the worker's time; it reads what is there first (RequestHeadWait.received).
RequestHeadWait's timers and watcher, made once per connection, gave back 1.7 %.
"""

import select
import time

import gevent
from gevent import monkey
from gevent.socket import wait_read
from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from config.gunicorn.observability.requestid import request_scope
from config.gunicorn.sizing import GEVENT_SHED_FACTOR
from config.gunicorn.workers.lifecycle import STOP_LINGER_S, Lifecycle
from config.gunicorn.workers.limits import (
    REQUEST_HEAD_TIMEOUT,
    SLOW_HEAD,
    Refusal,
    body_deadline,
    buffer_body,
    check_head,
    log_closed,
    refuse,
    release_body,
)
from config.gunicorn.workers.responses import ResponseSocket, date_once_a_second

PROBE_PATHS = ("/healthz", "/readyz")
SHED_HEAD_TIMEOUT = 1
# A connection whose next request is always there already (a client that pipelines, or
# one faster than the worker's own work after a response) never made its greenlet wait: it
# kept the loop, request after request, while every other connection waited (3,000
# pipelined requests held a worker for 0.45 s). After TURN_S of requests without a wait,
# its greenlet gives way for one turn of the loop (a sleep of 0 can resume it before the
# loop polls the others). wrk on /healthz, 30 connections, on a CPU shared with 3 other
# servers: p99 145 to 162 ms, where it was 1.36 to 1.58 s (stock gunicorn: 1.24 to 1.58 s),
# for 1 to 2.4 % more CPU a request there, where no connection ever waits; a connection
# that waits between requests starts a new turn each time, and never gives way.
TURN_S = 0.001
GIVE_WAY_S = 1e-6
# The system call itself, not gevent's cooperative version: asking whether a socket has
# data costs one call, where a wait through gevent's hub (even for data already there)
# cost 5 % of a worker's time on /healthz. poll(), not select(): select() refuses a
# descriptor over 1023, which a worker of 1,000 connections has (each request on them
# failed with a ValueError, and a load test's higher steps saw thousands of errors).
unpatched_poll = monkey.get_original("select", "poll")
unpatched_read = monkey.get_original("os", "read")
date_once_a_second()  # gunicorn's Date header: see responses.py


class CloseIdle(Exception):
    """Raised in a connection's greenlet that waits, idle, for its next request."""


class Connection:
    """What the worker knows of one connection, held by the greenlet that serves it."""

    __slots__ = ("client", "head_wait", "shed", "unreader")

    def __init__(self, client, shed):
        self.client = client  # gunicorn's address of it, for the log
        self.shed = shed  # taken over worker_connections: one request, only a probe served
        self.head_wait = None  # its RequestHeadWait
        self.unreader = None  # gunicorn's buffer of what the client sent, once a request came


class GuardedGeventWorker(Lifecycle, GeventWorker):
    model = "gevent"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # gunicorn's worker sizes its greenlet pool from this: room to shed as many again
        # rather than leave them in the backlog. (Unbounded, gunicorn's graceful stop finds
        # the pool never empty, and waits its whole graceful_timeout.)
        self.worker_connections = GEVENT_SHED_FACTOR * self.cfg.worker_connections
        self.connections = {}  # greenlet: Connection
        self.idle = {}  # greenlet: the time it began waiting; the longest first

    def handle(self, listener, client, addr):
        greenlet = gevent.getcurrent()
        shed = len(self.connections) >= self.cfg.worker_connections and not self.close_idle(1)
        connection = self.connections[greenlet] = Connection(addr, shed)
        connection.head_wait = RequestHeadWait(self, connection)
        try:
            super().handle(listener, client, addr)
        finally:
            del self.connections[greenlet]
            connection.head_wait.close()

    def timeout_ctx(self):
        # gunicorn reads each request head within this.
        return self.connections[gevent.getcurrent()].head_wait

    @request_scope  # the request ID, and its count in flight: observability/
    def handle_request(self, listener_name, req, sock, addr):
        connection = self.connections[gevent.getcurrent()]
        connection.unreader = req.unreader
        try:
            error, body_length = check_head(req)
            if error is None and connection.shed:
                if req.path not in PROBE_PATHS:
                    error = Refusal(503, "Service Unavailable", "worker full: connection shed")
                req.force_close()
            if error is not None:
                raise error
            if body_length != 0:
                timeout = Refusal(408, "Request Timeout", "request body too slow")
                with gevent.Timeout(body_deadline(body_length), timeout):
                    buffer_body(req, sock, body_length)
        except Refusal as error:
            refuse(self.log, sock, error)
            raise StopIteration() from None  # gunicorn's worker closes the connection
        response = ResponseSocket(sock)
        try:
            super().handle_request(listener_name, req, response, addr)
        finally:
            if body_length != 0:
                release_body(req)
            response.finish()  # a head without a body: HEAD, 204, 304

    def handle_error(self, req, client, addr, exc):
        super().handle_error(req, client, addr, exc)
        # As gunicorn's sync and gthread workers do: closed with the rest of the request
        # unread (a 414's long line, say), the socket was reset under the client, which then
        # read a reset rather than the answer (3 of 3 414s).
        util.close_graceful(client)

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        gevent.spawn(self.close_idle)  # a signal handler must not switch greenlets itself

    def stop_accepting(self):
        self.close_idle()

    def close_idle(self, count=None):
        """Close `count` idle kept-alive connections (all: None), the longest idle first.

        Returns how many were asked to close. Each is told in a callback of the loop, and
        only if it is idle still: its next request may have come meanwhile and be running.
        (gevent's kill() throws into whatever the greenlet is doing: a load test saw 5
        requests to /demo/io-async fail with a 500 as a worker was replaced.)
        """
        chosen = list(self.idle)[:count]
        loop = gevent.get_hub().loop
        for greenlet in chosen:
            del self.idle[greenlet]
            loop.run_callback(self.close_if_idle, greenlet)
        return len(chosen)

    def close_if_idle(self, greenlet):
        connection = self.connections.get(greenlet)
        if connection is not None and connection.head_wait.idle:
            greenlet.throw(CloseIdle)  # from the loop, as gevent's kill() throws


class RequestHeadWait:
    """How long gunicorn's worker waits for a request head on one connection.

    The first request's head must arrive within REQUEST_HEAD_TIMEOUT of the accept.
    After a response, the connection is idle until the client sends again: up to the
    keep-alive timeout, or until the worker closes it (CloseIdle); the head then gets
    REQUEST_HEAD_TIMEOUT from its first byte. A timeout ends the connection quietly.

    One per connection, entered once per request: its two timers and its watcher are
    made once and restarted. Made anew for each request, as gunicorn's worker makes its
    timer, they cost 1.7 % more CPU a request on /healthz (both versions served at once
    on one CPU beside stock gunicorn: 0.9 to 2.4 % in each of 5 rounds).
    """

    def __init__(self, worker, connection):
        self.worker, self.connection = worker, connection
        seconds = SHED_HEAD_TIMEOUT if connection.shed else REQUEST_HEAD_TIMEOUT
        self.head_timer = gevent.Timeout(seconds, False)
        self.idle_timer = gevent.Timeout(worker.cfg.keepalive, StopIteration)
        self.poller = self.readable_watcher = self.turn_timer = None  # made when first needed
        self.idle = False  # waiting for the next request: the worker may close it
        self.turn_began = time.monotonic()  # when this greenlet last let the others run

    def __enter__(self):
        unreader = self.connection.unreader
        if unreader is not None:
            if not unreader.buf.tell():  # nothing sent ahead
                self.wait_while_idle(unreader)
            if time.monotonic() - self.turn_began > TURN_S:
                self.give_way()
        self.head_timer.start()
        return self

    def __exit__(self, kind, error, traceback):
        self.head_timer.cancel()
        if error is not self.head_timer:
            return False
        log_closed(self.worker.log, self.connection.client, SLOW_HEAD)
        return True  # gunicorn's worker then closes the connection quietly

    def give_way(self):
        """Let the loop run its next turn, then go on: see TURN_S."""
        hub = gevent.get_hub()
        if self.turn_timer is None:
            self.turn_timer = hub.loop.timer(GIVE_WAY_S)
        hub.wait(self.turn_timer)
        self.turn_began = time.monotonic()

    def close(self):
        for watcher in (self.head_timer, self.idle_timer, self.readable_watcher, self.turn_timer):
            if watcher is not None:
                watcher.close()

    def received(self, unreader, fileno):
        """Whether the client sent something (or closed the connection), without waiting.

        On a plain socket, what it sent is read into gunicorn's buffer, where its parser
        reads first: the recv() gunicorn would make next is made here, where a poll()
        asked first (one system call fewer a request on a busy connection). A TLS socket
        is polled: its bytes are for its SSL object to read.
        """
        if self.worker.cfg.is_ssl:
            if self.poller is None:
                self.poller = unpatched_poll()
                self.poller.register(fileno, select.POLLIN)
            return bool(self.poller.poll(0))
        try:
            data = unpatched_read(fileno, unreader.mxchunk)
        except BlockingIOError:
            return False
        unreader.unread(data)  # nothing (b""), when the client has closed: gunicorn reads that
        return True

    def wait_while_idle(self, unreader):
        fileno = unreader.sock.fileno()
        if self.received(unreader, fileno):
            return  # the next request is here already
        worker = self.worker
        if worker.alive:
            greenlet = gevent.getcurrent()
            worker.idle[greenlet] = time.monotonic()
            hub = gevent.get_hub()
            if self.readable_watcher is None:
                self.readable_watcher = hub.loop.io(fileno, 1)
            self.idle_timer.start()
            self.idle = True
            try:
                hub.wait(self.readable_watcher)
                self.turn_began = time.monotonic()
                return
            except CloseIdle:
                if worker.alive:  # closed to make room: at once, unless a request came
                    if self.received(unreader, fileno):
                        return
                    raise StopIteration("idle connection closed") from None
            finally:
                self.idle = False
                self.idle_timer.cancel()
                worker.idle.pop(greenlet, None)
        # The worker is stopping: a client may be sending its next request as it reads the
        # last response, which said keep-alive. Waited for a while, that request is served,
        # with Connection: close.
        wait_read(fileno, timeout=STOP_LINGER_S, timeout_exc=StopIteration)
