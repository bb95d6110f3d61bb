"""How a response leaves a WSGI worker: in fewer system calls than gunicorn makes.

gunicorn writes a response's head with one sendall(), then each piece of its
body with another: a JSON view answered with a Content-Length takes two, a
chunked one (/healthz) three. gevent's sendall() also asks the kernel for the
socket's send buffer size before it sends (a getsockopt(), to size its pieces),
so a gevent worker made six system calls for /healthz where three do.

ResponseSocket is the socket gunicorn writes one response to. It holds the
head until the body's first piece comes and sends the two with one send(),
then sendall() only for what send() did not take: no getsockopt() unless the
kernel's buffer is full. A response without a body (HEAD, 204, 304) sends its
head as the request ends (`finish`); an interim response (100 Continue, 103
Early Hints, a 101 that hands the connection to a WebSocket) is never held.

The Date header: gunicorn formats it with the email package for each response
(util.http_date, 3 % of a gevent worker's time on /healthz). It changes once a
second, and `date_once_a_second` formats it once a second.

Measured on /healthz against gunicorn's own worker class of the same model and
count, the three served at once on one CPU (stock, the preset before, after), a
wrk each on the other, medians of 5 rounds of 8 s, CPU time a request:

    preset    stock    before            after
    sync      264 us   289 us (91.3 %)   274 us (96.4 %)
    gthread   259 us   277 us (93.6 %)   267 us (97.1 %)
    gevent    219 us   264 us (82.9 %)   237 us (92.5 %)

(the share is stock's throughput a CPU that the preset keeps). Of gevent's 27
us, the held head and no getsockopt() gave 11 to 15 (two runs), the date 8;
reading the next request ahead (workers/gevent.py) saves a system call, too
little to tell from the noise (1.4 %) in these runs. Settings read as
attributes (lifecycle.py) took each preset past stock: workers/__init__.py.
"""

import time
from contextlib import suppress

from gunicorn import util

from config.gunicorn.observability.logs import once_a_second

# A head and a body piece up to this size go out in one send(); a larger piece is not
# copied to be joined to the head.
JOINED_MAX = 64 * 1024


class ResponseSocket:
    """The socket gunicorn writes one response to: the head waits for the body's first bytes."""

    __slots__ = ("head", "sock", "started")

    def __init__(self, sock):
        self.sock = sock
        self.head = None  # the response's head, held
        self.started = False  # the (final) response's head was written, or is held

    def sendall(self, data):
        head = self.head
        if head is not None:
            self.head = None
            if len(data) > JOINED_MAX:
                self.send_whole(head)
            else:
                data = head + data
        elif not self.started and not is_interim(data):
            self.started = True
            self.head = bytes(data)
            return
        self.send_whole(data)

    def send_whole(self, data):
        sent = self.sock.send(data)
        if sent < len(data):
            self.sock.sendall(memoryview(data)[sent:])

    def finish(self):
        """Send the head still held: the response had no body."""
        if self.head is not None:
            head, self.head = self.head, None
            self.send_whole(head)

    def send(self, data, *flags):
        self.finish()
        return self.sock.send(data, *flags)

    def sendfile(self, *args, **kwargs):
        self.finish()
        return self.sock.sendfile(*args, **kwargs)

    def shutdown(self, how):
        # gunicorn ends a response that failed after its head this way: the client gets
        # the head first, as it did from gunicorn.
        with suppress(OSError):
            self.finish()
        self.sock.shutdown(how)

    def close(self):
        with suppress(OSError):
            self.finish()
        self.sock.close()

    def __getattr__(self, name):
        return getattr(self.sock, name)


def is_interim(data):
    """Whether `data` starts a 1xx response ("HTTP/1.1 1..."), which the final one follows."""
    return data[9:10] == b"1"


def date_once_a_second():
    """Make gunicorn's Date header a string formatted once a second (see the module's doc)."""
    if getattr(util.http_date, "once_a_second", False):
        return
    format_date = util.http_date
    date_at = once_a_second(format_date)

    def http_date(timestamp=None):
        if timestamp is not None:
            return format_date(timestamp)
        return date_at(int(time.time()))

    http_date.once_a_second = True
    util.http_date = http_date
