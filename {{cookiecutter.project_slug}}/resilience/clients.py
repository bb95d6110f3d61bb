"""Well-behaved HTTP clients on raw sockets, that tell "no answer" apart from "an error answer".

urllib and http.client fold a reset, a connection closed without a word and a
timeout into a handful of exceptions, and may retry. Here every request ends
in one Outcome: the status the server answered, or why there was none. That
difference is the whole point of the resilience session: a 503 is a failure
the client can act on, a reset is a request lost.

Each request opens a fresh connection and asks the server to close it
(Connection: close), as a load balancer without keep-alive does. A request the
server has not accepted yet then waits in the listen backlog, where drains and
crashes lose requests.
"""

import re
import socket
import threading
import time
from dataclasses import dataclass

HOST = "127.0.0.1"
REQUEST_TIMEOUT_S = 10.0
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")


@dataclass
class Outcome:
    path: str
    started: float  # time.monotonic()
    ended: float
    sent: bool  # the whole request reached the server's socket
    status: int | None = None  # None: no answer
    error: str | None = None  # why there was no answer: refused, reset, closed, timed out

    @property
    def seconds(self):
        return self.ended - self.started


def request_head(method, path, port, headers=()):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def get(port, path, timeout=REQUEST_TIMEOUT_S, on_sent=None):
    """GET `path` on a new connection; `on_sent()` is called once the request is written."""
    started = time.monotonic()
    try:
        sock = socket.create_connection((HOST, port), timeout=timeout)
    except OSError as exc:
        return Outcome(path, started, time.monotonic(), sent=False, error=reason(exc))
    with sock:
        try:
            sock.sendall(request_head("GET", path, port))
        except OSError as exc:
            return Outcome(path, started, time.monotonic(), sent=True, error=reason(exc))
        if on_sent is not None:
            on_sent()
        status, error = read_status(sock, started + timeout)
    return Outcome(path, started, time.monotonic(), sent=True, status=status, error=error)


def read_status(sock, deadline):
    """(status, None) once the response has been read to its end; (None, why) without one.

    The response is read until the server closes the connection: a status line followed by
    a reset still counts as answered, as it would for a browser.
    """
    received = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            error = "timed out"
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except OSError as exc:
            error = reason(exc)
            break
        if not chunk:
            error = "closed"
            break
        received += chunk
    match = STATUS_LINE.match(received)
    if match:
        return int(match.group(1)), None
    return None, error


def reason(exc):
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    return type(exc).__name__


class Load:
    """`clients` threads sending GET `path` one after the other until stopped.

    `interval_s`: each client starts a request at most that often (a probe); 0: as soon
    as the last one is answered (steady load).
    """

    def __init__(self, port, path, clients, interval_s=0.0, timeout=REQUEST_TIMEOUT_S):
        self.port, self.path, self.interval_s, self.timeout = port, path, interval_s, timeout
        self.outcomes = []  # list.append is atomic: the threads share it without a lock
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, daemon=True, name=f"load-{number}")
            for number in range(clients)
        ]

    def _client(self):
        while not self._stopping.is_set():
            outcome = get(self.port, self.path, self.timeout)
            self.outcomes.append(outcome)
            self._stopping.wait(max(0.0, self.interval_s - outcome.seconds))

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def stop(self):
        """Stop sending; wait for the requests in flight (each within its timeout)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join()
        return self.outcomes

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


class InFlight:
    """`count` GET requests sent at once, each on its own connection and thread."""

    def __init__(self, port, path, count, timeout=REQUEST_TIMEOUT_S):
        self.count = count
        self.outcomes = []
        self._sent = threading.Semaphore(0)
        self._threads = [
            threading.Thread(
                target=lambda: self.outcomes.append(
                    get(port, path, timeout, on_sent=self._sent.release)
                ),
                daemon=True,
                name=f"in-flight-{number}",
            )
            for number in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def wait_until_sent(self, timeout=10.0):
        """True once every request has been written to its connection."""
        deadline = time.monotonic() + timeout
        return all(
            self._sent.acquire(timeout=max(0.0, deadline - time.monotonic()))
            for _ in range(self.count)
        )

    def wait(self):
        """Every Outcome, once each request has its answer, or has given up on it."""
        for thread in self._threads:
            thread.join()
        return self.outcomes
