"""Clients that misbehave on purpose: slow request heads (slowloris) and bodies, oversized bodies.

Both hold a connection for as long as the server lets them: what they measure
is when and how the server lets go.
"""

import itertools
import select
import selectors
import socket
import threading
import time
from dataclasses import dataclass

from .clients import HOST, STATUS_LINE, reason, request_head


def endless_head():
    """A request head that never ends, a byte at a time: a first line, then made-up headers."""
    head = itertools.chain(b"GET /healthz HTTP/1.1\r\n", itertools.cycle(b"X-Slowloris: 1\r\n"))
    return (bytes([byte]) for byte in head)


def slow_body(port, declared_bytes):
    """A whole request head declaring `declared_bytes` of body, then the body a byte at a time."""
    head = request_head(
        "POST",
        "/healthz",
        port,
        headers=[
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", declared_bytes),
        ],
    )
    return itertools.chain([head], itertools.repeat(b"x", declared_bytes))


class SlowClients:
    """`count` connections, each sending the next piece of `stream(port)` every `interval_s`.

    A connection counts as closed by the server when it reads an end of file or a reset,
    or an answer (a 408, a 400): `closed_after_s` holds how long after it was opened,
    `answers` the status of each answer and how the connection ended after it.
    """

    def __init__(self, port, count, interval_s=1.0, stream=None):
        self.port, self.count, self.interval_s = port, count, interval_s
        self.stream = stream or (lambda port: endless_head())
        self.closed_after_s = []
        self.answers = []  # (status, "end of file", "reset" or "open")
        self.refused = 0
        self._open = {}  # socket: (time opened, its bytes to send)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True, name="slowloris")

    def start(self):
        for _ in range(self.count):
            try:
                sock = socket.create_connection((HOST, self.port), timeout=5)
            except OSError:
                self.refused += 1
                continue
            sock.setblocking(False)
            self._open[sock] = (time.monotonic(), self.stream(self.port))
        self._thread.start()
        return self

    def wait_until_all_closed(self, timeout):
        """True once the server has closed every connection; False after `timeout`."""
        self._thread.join(timeout)  # it ends when none is left open
        return not self._thread.is_alive()

    def _trickle(self):
        next_byte_at = time.monotonic()
        while not self._stopping.is_set() and self._open:
            if time.monotonic() >= next_byte_at:
                for sock, (_, head) in list(self._open.items()):
                    try:
                        sock.send(next(head))
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._closed(sock)
                next_byte_at += self.interval_s
            # Wake as soon as the server closes a connection: its time is the measurement.
            wait = max(0.0, min(next_byte_at - time.monotonic(), 0.1))
            readable, _, _ = select.select(list(self._open), [], [], wait)
            for sock in readable:
                self._closed(sock)

    def _closed(self, sock):
        opened, _ = self._open.pop(sock)
        self.closed_after_s.append(time.monotonic() - opened)
        try:
            answer = sock.recv(65536)
        except OSError:
            answer = b""
        match = STATUS_LINE.match(answer)
        if match:
            self.answers.append((int(match.group(1)), how_closed(sock)))
        sock.close()

    def stop(self):
        """Close what the server has not."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        for sock in self._open:
            sock.close()
        self._open.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


@dataclass
class BodyOutcome:
    status: int | None  # None: no answer
    error: str | None  # why there was none
    seconds: float | None  # from the request head to the answer
    bytes_sent: int  # head and body: what the client had to send before the answer
    answered_before_body: bool  # only the first `early_bytes` of the body had been sent
    closed_after_answer: bool  # the server closed the connection once it had answered
    sent: bool = True  # the request head reached the server: it counts as sent


def post_large_body(port, path, declared_bytes, early_bytes, early_wait_s=2.0, max_s=10.0):
    """POST with Content-Length: `declared_bytes`, sending only `early_bytes` of the body.

    A server that refuses the body by its declared length answers at once. One that
    does not answer within `early_wait_s` gets the rest of the body, for up to `max_s`:
    its answer, if any, then comes after reading it (`answered_before_body` is False).
    """
    head = request_head(
        "POST",
        path,
        port,
        headers=[
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", declared_bytes),
        ],
    )
    with socket.create_connection((HOST, port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(head + bytes(early_bytes))
        sent = len(head) + early_bytes
        body_left = declared_bytes - early_bytes
        sock.setblocking(False)
        received, error = b"", "timed out"
        while time.monotonic() < started + max_s:
            sending = body_left > 0 and time.monotonic() >= started + early_wait_s
            readable, writable, _ = select.select([sock], [sock] if sending else [], [], 0.1)
            try:
                if readable:
                    chunk = sock.recv(65536)
                    if not chunk:
                        error = "closed"
                        break
                    received += chunk
                    if STATUS_LINE.match(received):
                        break
                elif writable:
                    count = sock.send(bytes(min(body_left, 65536)))
                    sent += count
                    body_left -= count
            except BlockingIOError:
                continue
            except OSError as exc:
                error = reason(exc)
                break
        seconds = time.monotonic() - started
        match = STATUS_LINE.match(received)
        if match is None:
            return BodyOutcome(None, error, None, sent, False, False)
        return BodyOutcome(
            status=int(match.group(1)),
            error=None,
            seconds=seconds,
            bytes_sent=sent,
            answered_before_body=sent == len(head) + early_bytes,
            closed_after_answer=how_closed(sock) != "open",
        )


LAST_CHUNK = b"0\r\n\r\n"


@dataclass
class FloodOutcome:
    status: int | None  # None: no answer
    error: str | None  # why there was none
    seconds: float  # from the request head to the answer, or to giving up
    bytes_sent: int  # of the body, before the answer came or the connection ended
    closed: str  # after the answer: "end of file", "reset", or "open" after 2 s
    sent: bool = True  # the request head reached the server: it counts as sent


def post_chunked_flood(port, path, chunk_bytes, max_bytes, max_s=30.0):
    """POST a chunked body of `chunk_bytes` chunks, up to `max_bytes`, until the server answers.

    The client stops sending once it has read an answer, as RFC 9112 asks of a client that
    gets an error status mid-body: `bytes_sent` is what the server let in before saying no.
    A reset while sending ends the sending, not the reading: an answer already in the
    receive buffer is still read.
    """
    head = request_head(
        "POST",
        path,
        port,
        headers=[("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")],
    )
    chunk = f"{chunk_bytes:x}\r\n".encode() + bytes(chunk_bytes) + b"\r\n"
    with socket.create_connection((HOST, port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(head)
        sock.setblocking(False)
        pending, body_sent, received, error = b"", 0, b"", "timed out"
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while time.monotonic() < started + max_s:
                for _, events in selector.select(timeout=0.1):
                    if events & selectors.EVENT_READ:
                        try:
                            data = sock.recv(65536)
                        except OSError as exc:
                            error = reason(exc)
                            data = None
                        if not data:
                            error = "closed" if data == b"" else error
                            break
                        received += data
                        if b"\r\n\r\n" in received:
                            break
                    if events & selectors.EVENT_WRITE:
                        if not pending:
                            pending = chunk if body_sent < max_bytes else LAST_CHUNK
                        try:
                            count = sock.send(pending)
                        except BlockingIOError:
                            continue
                        except OSError as exc:
                            error = reason(exc)
                            selector.modify(sock, selectors.EVENT_READ)  # read what came
                            continue
                        body_sent += count
                        pending = pending[count:]
                        if not pending and body_sent > max_bytes:  # the last chunk is out
                            selector.modify(sock, selectors.EVENT_READ)
                else:
                    continue
                break
        seconds = time.monotonic() - started
        match = STATUS_LINE.match(received)
        if match is None:
            return FloodOutcome(None, error, seconds, body_sent, "no answer")
        return FloodOutcome(int(match.group(1)), None, seconds, body_sent, how_closed(sock))


def how_closed(sock, timeout=2.0):
    """After an answer: "end of file" or "reset" once the server closes, "open" after `timeout`."""
    deadline = time.monotonic() + timeout
    sock.setblocking(True)
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return "end of file"
        except TimeoutError:
            break
        except OSError:
            return "reset"
    return "open"
