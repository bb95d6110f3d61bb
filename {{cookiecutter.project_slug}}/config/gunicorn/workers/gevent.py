"""The gevent preset's worker: gunicorn's, with a bound on the wait for a first request head."""

import gevent
from gevent import local
from gunicorn.workers.ggevent import GeventWorker

from config.gunicorn.workers.limits import (
    REQUEST_HEAD_TIMEOUT,
    RefuseLargeBodies,
    content_length,
    read_unread_body,
    too_large,
)


class HeadTimeoutGeventWorker(RefuseLargeBodies, GeventWorker):
    model = "gevent"

    def init_process(self):
        self.connection = local.local()  # one per greenlet, so one per connection
        super().init_process()

    def timeout_ctx(self):
        # gunicorn bounds the wait for each request head with this: the first one on a
        # connection gets REQUEST_HEAD_TIMEOUT, the next ones the keep-alive timeout.
        first = not getattr(self.connection, "served", False)
        self.connection.served = True
        return gevent.Timeout(REQUEST_HEAD_TIMEOUT if first else self.cfg.keepalive, False)

    def handle_request(self, listener_name, req, sock, addr):
        if too_large(content_length(req)):
            req.must_close = True  # else the worker reads the body to find the next request
        keep_alive = super().handle_request(listener_name, req, sock, addr)
        return read_unread_body(req, sock) and keep_alive
