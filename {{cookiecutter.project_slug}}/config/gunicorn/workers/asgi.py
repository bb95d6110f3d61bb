"""The asgi preset's worker: gunicorn's, with its connections guarded (see __init__.py)."""

from urllib.parse import urlsplit

from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.workers import gasgi

from config.gunicorn.workers.limits import REQUEST_HEAD_TIMEOUT, TOO_LARGE_BODY, too_large

ABSOLUTE_FORM = (b"http://", b"https://")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before the response


class GuardedProtocol(ASGIProtocol):
    """gunicorn's HTTP/1 connection, with a bound on its first request head and its body."""

    head_deadline = None

    def __init__(self, worker):
        super().__init__(worker)
        self.log = ClientGoneLog(self.log, self)

    def connection_made(self, transport):
        super().connection_made(transport)
        self.head_deadline = self.worker.loop.call_later(REQUEST_HEAD_TIMEOUT, transport.close)

    def _on_headers_complete(self):
        if self.head_deadline is not None:
            self.head_deadline.cancel()
        if too_large(self._callback_parser.content_length):
            self._send_error_response(413, TOO_LARGE_BODY)
            self._close_transport()
            return False
        outcome = super()._on_headers_complete()
        request = self._current_request
        if request.raw_path.lower().startswith(ABSOLUTE_FORM):
            # RFC 9112 3.2.2: a proxy's absolute-form target; the path is what follows the host.
            request.raw_path = urlsplit(request.raw_path).path or b"/"
            request.path = urlsplit(request.path).path or "/"
        return outcome

    def connection_lost(self, exc):
        if self.head_deadline is not None:
            self.head_deadline.cancel()
        super().connection_lost(exc)


class ClientGoneLog:
    """gunicorn's log, for one connection: a request whose client left is logged as 499.

    A client that closes its connection before the response starts (a load
    generator stopping, a browser tab closed) gets nothing, and gunicorn 27's
    asgi worker logged each such request as "500 0", though nothing failed:
    Django had cancelled the view, or finished it with no one to send it to.
    """

    def __init__(self, log, protocol):
        self.wrapped, self.protocol = log, protocol

    def __getattr__(self, name):
        return getattr(self.wrapped, name)

    def access(self, resp, req, environ, request_time):
        if self.protocol._closed and resp.status == 500 and not resp.sent:
            resp.status = CLIENT_CLOSED_REQUEST
        self.wrapped.access(resp, req, environ, request_time)


class GuardedASGIWorker(gasgi.ASGIWorker):
    model = "asgi"

    def run(self):
        # gunicorn's worker builds its connections from this module-level name, in this
        # process only: there is no setting for the protocol class.
        gasgi.ASGIProtocol = GuardedProtocol
        super().run()
