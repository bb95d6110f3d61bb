"""The sync preset's worker: gunicorn's, serving its listen backlog before it exits."""

import errno

from gunicorn.workers.sync import SyncWorker

from config.gunicorn.workers.limits import RefuseLargeBodies, read_unread_body

NOTHING_WAITING = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNABORTED)


class DrainingSyncWorker(RefuseLargeBodies, SyncWorker):
    model = "sync"

    def handle_request(self, listener, req, client, addr):
        super().handle_request(listener, req, client, addr)
        read_unread_body(req, client)  # before gunicorn closes the connection

    def run(self):
        super().run()  # returns once SIGTERM has been received, or the master is gone
        if self.is_parent_alive():
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
