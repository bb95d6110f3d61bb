"""The gthread preset's worker: gunicorn's, with keep-alive that shares the load, bounded
request heads and bodies, and its listen backlog taken in before it stops.

Keep-alive. gunicorn's gthread worker accepts connections up to
worker_connections whatever its threads are doing, and keep-alive keeps each
with the worker that accepted it: one of 5 workers held 66 to 92 of 100
clients, and the others idled. Turning keep-alive off spread them (a new
connection for every request), at a price: a TCP handshake per request cost
58 % of the requests/s on /healthz (2,859 against stock gunicorn's 6,797).
This worker keeps connections alive and accepts a new one only while a thread
is idle: a busy worker leaves new clients to the others, so they spread
evenly, and each keeps its connection.

Slow clients. A thread that has taken a connection waits for its request
head (gunicorn's worker waits 5 s for the first byte, then forever for the
rest) and then its body for at most the time limits.py allows: the main loop
checks the deadlines once a second and cuts off (shutdown for reading) a
connection past its own, which frees the thread.

Shutdown. On SIGTERM gunicorn's worker stops accepting, and the connections
the kernel had accepted for it, waiting in the listen backlog, are reset when
the last worker exits: with 50 requests of 1 s in flight, 25 were answered.
This worker takes the backlog in first, for its threads to serve within the
graceful timeout: 50 of 50. (Not when it is being recycled: the other workers
take new connections then.)
"""

import socket
import time
from contextlib import suppress

from gunicorn.workers.gthread import ThreadWorker

from config.gunicorn.observability.requestid import request_scope
from config.gunicorn.workers.lifecycle import Lifecycle
from config.gunicorn.workers.limits import (
    REQUEST_HEAD_TIMEOUT,
    SLOW_BODY,
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

date_once_a_second()  # gunicorn's Date header: see responses.py


class GuardedThreadWorker(Lifecycle, ThreadWorker):
    model = "gthread"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.busy = 0  # connections given to the thread pool and not yet back
        self.deadlines = {}  # connection in a thread: when it must have sent what it sends

    def enqueue_req(self, conn):
        self.busy += 1
        super().enqueue_req(conn)

    def finish_request(self, conn, fs):
        self.busy -= 1
        super().finish_request(conn, fs)

    def accept(self, listener):
        super().accept(listener)
        if self.busy >= self.cfg.threads:
            super().set_accept_enabled(False)  # the main loop asks again once a thread is free

    def set_accept_enabled(self, enabled):
        if not enabled and not self.alive and not self.recycling:
            self.accept_backlog()  # SIGTERM: serve what waits in the backlog first
        elif enabled and self.busy >= self.cfg.threads:
            return
        super().set_accept_enabled(enabled)

    def accept_backlog(self):
        for listener in self.sockets:
            while True:
                accepted = self.nr_conns
                super().accept(listener)  # queues the connection for a thread; ignores EAGAIN
                if self.nr_conns == accepted:
                    break

    def handle(self, conn):
        self.deadlines[conn] = (time.monotonic() + REQUEST_HEAD_TIMEOUT, SLOW_HEAD)
        try:
            return super().handle(conn)
        finally:
            self.deadlines.pop(conn, None)

    @request_scope  # the request ID, and its count in flight: observability/
    def handle_request(self, req, conn):
        try:
            error, body_length = check_head(req)
            if error is not None:
                raise error
            if body_length != 0:
                self.deadlines[conn] = (time.monotonic() + body_deadline(body_length), SLOW_BODY)
                buffer_body(req, conn.sock, body_length)
        except Refusal as error:
            refuse(self.log, conn.sock, error)
            return False
        self.deadlines.pop(conn, None)  # the application's time is the application's
        # gunicorn writes the response to conn.sock: for this request, a ResponseSocket.
        conn.sock = response = ResponseSocket(conn.sock)
        try:
            return super().handle_request(req, conn)
        finally:
            conn.sock = response.sock
            if body_length != 0:
                release_body(req)
            response.finish()  # a head without a body: HEAD, 204, 304

    def murder_keepalived(self, force=False):
        # Called by the main loop at least once a second.
        super().murder_keepalived(force)
        now = time.monotonic()
        for conn, (deadline, why) in list(self.deadlines.items()):
            if now > deadline and self.deadlines.pop(conn, None) is not None:
                log_closed(self.log, conn.client, why)
                with suppress(OSError):  # gone already
                    conn.sock.shutdown(socket.SHUT_RD)  # its thread reads the end, and is free
