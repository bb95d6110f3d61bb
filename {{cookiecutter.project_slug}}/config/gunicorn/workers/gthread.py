"""The gthread preset's worker: gunicorn's, taking its listen backlog in before it stops."""

from gunicorn.workers.gthread import ThreadWorker

from config.gunicorn.workers.limits import RefuseLargeBodies


class DrainingThreadWorker(RefuseLargeBodies, ThreadWorker):
    model = "gthread"

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
