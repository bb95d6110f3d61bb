"""The gthread preset's worker: gunicorn's, taking its listen backlog in before it stops."""

from gunicorn.workers.gthread import ThreadWorker

from config.gunicorn.workers.limits import RefuseLargeBodies, read_unread_body


class DrainingThreadWorker(RefuseLargeBodies, ThreadWorker):
    model = "gthread"

    def handle_request(self, req, conn):
        keep_alive = super().handle_request(req, conn)
        # Read whatever the body still holds in this thread, with a bound, whether the
        # connection closes next or waits for its next request.
        return read_unread_body(req, conn.sock) and keep_alive

    def set_accept_enabled(self, enabled):
        # gunicorn stops accepting here once SIGTERM has been received: take in what waits
        # in the backlog first, for the threads to serve within the graceful timeout.
        if not enabled and not self.alive:
            self.accept_backlog()
        super().set_accept_enabled(enabled)

    def accept_backlog(self):
        for listener in self.sockets:
            while True:
                accepted = self.nr_conns
                self.accept(listener)  # queues the connection for a thread; ignores EAGAIN
                if self.nr_conns == accepted:
                    break
