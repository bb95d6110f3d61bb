"""The sync preset's worker: gunicorn's, with bounded request heads and bodies, serving its
listen backlog before it exits.

Slow clients. A sync worker reading a request is taken from everyone else,
which is why it belongs behind a buffering proxy (deploy/nginx/). Without one,
gunicorn's worker waited for a request head or body until its own timeout
(30 s), when the master killed it mid-request: a 500, a 120-line traceback and
"Worker was sent SIGKILL". Here a head gets REQUEST_HEAD_TIMEOUT (10 s) and a
body 10 s between two of its bytes (limits.py): then one line in the log, a
408 for a body, and the worker serves the next client.

Shutdown. On SIGTERM gunicorn's sync worker stops accepting, and the
connections the kernel had accepted for it, waiting in the listen backlog, are
reset when the last worker exits: with 50 requests of 1 s in flight, 5 were
answered. This worker serves the backlog first, within the graceful timeout:
50 of 50. (Not when it is being recycled: the other workers take it then.)
"""

import errno

from gunicorn.workers.sync import SyncWorker

from config.gunicorn.observability import metrics
from config.gunicorn.observability.requestid import request_scope
from config.gunicorn.workers.lifecycle import Lifecycle
from config.gunicorn.workers.limits import (
    REQUEST_HEAD_TIMEOUT,
    SLOW_HEAD,
    Refusal,
    buffer_body,
    check_head,
    log_closed,
    refuse,
    release_body,
)
from config.gunicorn.workers.responses import ResponseSocket, date_once_a_second

NOTHING_WAITING = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED)
date_once_a_second()  # gunicorn's Date header: see responses.py


class GuardedSyncWorker(Lifecycle, SyncWorker):
    model = "sync"

    def handle(self, listener, client, addr):
        if self.cfg.is_ssl:
            return super().handle(listener, client, addr)  # gunicorn wraps the socket itself
        client.settimeout(REQUEST_HEAD_TIMEOUT)
        super().handle(listener, HeadBoundSocket(client, self.log, addr), addr)

    @request_scope  # the request ID, and its count in flight: observability/
    def handle_request(self, listener, req, client, addr):
        sock = client
        if isinstance(client, HeadBoundSocket):
            client.reading_head = False
            sock = client.sock
        sock.settimeout(None)
        try:
            error, body_length = check_head(req)
            if error is not None:
                raise error
            if body_length != 0:
                buffer_body(req, sock, body_length)
        except Refusal as error:
            refuse(self.log, sock, error)
            return
        response = ResponseSocket(client)
        try:
            super().handle_request(listener, req, response, addr)
        finally:
            if body_length != 0:
                release_body(req)
            response.finish()  # a head without a body: HEAD, 204, 304

    def wait(self, timeout):
        metrics.waiting()  # what it served, to the metrics files: it may now wait 15 s
        return super().wait(timeout)

    def run(self):
        super().run()  # returns once SIGTERM has been received, or the master is gone
        if self.is_parent_alive() and not self.recycling:
            self.drain()

    def drain(self):
        """Serve the connections waiting in the backlog, one at a time, until there are none.

        The arbiter kills a worker still busy after graceful_timeout: a backlog too long to
        serve by then is cut there, as a request that runs too long would be.
        """
        while True:
            self.notify()
            served = False
            for listener in self.sockets:
                try:
                    self.accept(listener)  # accepts and serves one request
                    served = True
                except OSError as exc:
                    if exc.errno not in NOTHING_WAITING:
                        raise
            if not served:
                return


class HeadBoundSocket:
    """A client socket whose request head times out into the end of the connection.

    gunicorn's sync worker logs a traceback for a socket timeout while it reads a
    request head; an end of input it closes quietly. The line is logged here, before
    gunicorn closes the connection: logged after, it came once the client had seen
    the close, and a CI run read the log in between.
    """

    def __init__(self, sock, log, addr):
        self.sock, self.log, self.addr = sock, log, addr
        self.reading_head = True
        self.stalled = False
        # What gunicorn and the response's socket (responses.py) call on every connection,
        # bound here rather than found through __getattr__: six Python calls a request fewer.
        self.send, self.sendall, self.settimeout = sock.send, sock.sendall, sock.settimeout
        self.shutdown, self.close = sock.shutdown, sock.close

    def recv(self, size):
        try:
            return self.sock.recv(size)
        except TimeoutError:
            if not self.reading_head:
                raise  # a body's: limits.buffer_body answers it with a 408
            if not self.stalled:
                self.stalled = True
                log_closed(self.log, self.addr, SLOW_HEAD)
            return b""

    def __getattr__(self, name):
        return getattr(self.sock, name)
