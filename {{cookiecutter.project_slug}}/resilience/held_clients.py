"""Thousands of connections held open on purpose, from one thread: what holds a server's slots.

Two kinds, as in the report that gevent's worker once let every /healthz wait 30 s:

- "head": a full request (GET /healthz, kept alive), then the start of a second
  request head that never ends. Once the first answer has come, the server may
  close the connection at once (no keep-alive), or must once the second head has
  taken its request head timeout.
- "body": a POST that declares a body of `body_bytes` and sends one byte of it.
  The server owes it a 408 once the body has stalled.

`held_at` is when a connection began to hold (its second head or its byte sent):
`answered_after_s` and `closed_after_s` count from there to the server's answer
(a 408) and to its end of file or reset. epoll, not select(): descriptors past
1024 are the point.

They open SETTING_UP at a time, as many clients arrive: 2,100 connects at once
overflowed the listen queue (2,941 overflows, SYN cookies; 346 connections of the
asgi preset never got their first answer in 15 s).
"""

import errno
import re
import selectors
import socket
import time
from contextlib import suppress
from dataclasses import dataclass

from .clients import HOST, STATUS_LINE

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", flags=re.IGNORECASE)
CONNECT_TIMEOUT_S = 5.0
SETTING_UP = 100  # connections opened and not yet holding, at most


@dataclass(eq=False)
class Held:
    kind: str  # "head" or "body"
    sock: socket.socket
    opened_at: float
    outbox: bytes = b""  # what is still to send in the current step
    inbox: bytes = b""
    step: str = "connecting"  # then "first" (head only), "held", "closed"
    first_status: int | None = None  # the answer to a head connection's first request
    status: int | None = None  # the answer once held (a 408), if any
    held_at: float | None = None
    answered_after_s: float | None = None
    closed_after_s: float | None = None
    ended_by: str | None = None  # "end of file", "reset", or why it never held


class HeldConnections:
    """`heads` + `bodies` connections to 127.0.0.1:`port`, driven by `run()` until `until()`."""

    def __init__(self, port, heads, bodies, body_bytes=1_000_000):
        self.port = port
        host = f"Host: {HOST}:{port}\r\n"
        self.first_request = f"GET /healthz HTTP/1.1\r\n{host}\r\n".encode()
        self.second_head = f"GET /healthz HTTP/1.1\r\n{host}X-Held: 1\r\n".encode()
        self.body_head = (
            f"POST /healthz HTTP/1.1\r\n{host}Content-Type: application/octet-stream\r\n"
            f"Content-Length: {body_bytes}\r\n\r\n"
        ).encode() + b"x"
        total = heads + bodies
        every = total // bodies if bodies else total + 1  # the bodies spread among the heads
        self.to_open = [
            "body" if number % every == every - 1 and number // every < bodies else "head"
            for number in range(total)
        ]
        self.to_open.reverse()  # popped from the end
        self.connections = []
        self.last_held_at = None  # when the last connection began to hold
        self.selector = selectors.DefaultSelector()

    def _open(self, kind):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        held = Held(kind, sock, time.monotonic())
        code = sock.connect_ex((HOST, self.port))
        if code not in (0, errno.EINPROGRESS):
            self._end(held, "refused")
            return held
        self.selector.register(sock, selectors.EVENT_WRITE, held)
        return held

    def run(self, until):
        """Open and drive every connection until `until()` is true or none is left open."""
        while (self.to_open or self.selector.get_map()) and not until():
            setting_up = sum(1 for held in self.open() if held.held_at is None)
            for _ in range(min(SETTING_UP - setting_up, len(self.to_open))):
                self.connections.append(self._open(self.to_open.pop()))
            now = time.monotonic()
            for key, events in self.selector.select(timeout=0.05):
                self._step(key.data, events, now)
            for held in self.open():
                if held.step == "connecting" and now - held.opened_at > CONNECT_TIMEOUT_S:
                    self._end(held, "not accepted")

    def open(self):
        return [held for held in self.connections if held.step != "closed"]

    def _step(self, held, events, now):
        if held.step == "connecting":
            if held.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._end(held, "refused")
                return
            if held.kind == "head":
                self._send(held, "first", self.first_request)
            else:
                self._send(held, "held", self.body_head)
            return
        if events & selectors.EVENT_WRITE and held.outbox:
            try:
                count = held.sock.send(held.outbox)
            except BlockingIOError:
                return
            except OSError:
                self._closed(held, "reset", now)
                return
            held.outbox = held.outbox[count:]
            if not held.outbox:
                if held.step == "held":
                    held.held_at = self.last_held_at = now
                self.selector.modify(held.sock, selectors.EVENT_READ, held)
        if events & selectors.EVENT_READ:
            try:
                data = held.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self._closed(held, "reset", now)
                return
            if not data:
                self._closed(held, "end of file", now)
                return
            held.inbox += data
            if held.step == "held" and held.answered_after_s is None and held.held_at:
                held.answered_after_s = now - held.held_at
            if held.step == "first" and (answer := complete_answer(held.inbox)):
                held.first_status, held.inbox = answer
                self._send(held, "held", self.second_head)

    def _send(self, held, step, data):
        held.step, held.outbox = step, data
        self.selector.modify(held.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, held)

    def _closed(self, held, how, now):
        match = STATUS_LINE.match(held.inbox)
        if match and held.step == "held":
            held.status = int(match.group(1))
        if held.step == "first":
            how = f"closed before its first answer ({how})"
        elif held.held_at is not None:
            held.closed_after_s = now - held.held_at
        else:
            held.closed_after_s = 0.0  # closed while it was still sending what holds it
        self._end(held, how)

    def _end(self, held, how):
        held.ended_by = how
        held.step = "closed"
        with suppress(KeyError):  # never registered: refused at once
            self.selector.unregister(held.sock)
        held.sock.close()

    def close(self):
        """Close what the server has not."""
        for held in self.open():
            self._end(held, "still open")
        self.selector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def complete_answer(received):
    """(status, what follows) once `received` holds a whole answer with a Content-Length."""
    head_end = received.find(b"\r\n\r\n")
    match = STATUS_LINE.match(received)
    if head_end < 0 or match is None:
        return None
    length = CONTENT_LENGTH.search(received[: head_end + 2])
    end = head_end + 4 + (int(length.group(1)) if length else 0)
    if len(received) < end:
        return None
    return int(match.group(1)), received[end:]
