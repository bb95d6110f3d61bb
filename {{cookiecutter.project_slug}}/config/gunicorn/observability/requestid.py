"""The request ID: one per request, in every line logged while it runs and in its response.

Taken from the request's X-Request-ID when the peer is a trusted proxy (gunicorn's
FORWARDED_ALLOW_IPS: deploy/nginx/ passes nginx's $request_id), else made here:
a client cannot choose the ID that ties lines together. An ID is 32 hex digits, as
nginx's: 16 random per process, then a counter, which costs 0.2 us where
uuid4() costs 1.5.

Where it is set:
- WSGI (sync, gthread, gevent): `request_scope` wraps each worker class's
  handle_request, so the worker's own refusals (408, 413, 503) are inside it;
  `wsgi` puts the ID in the WSGI environ, so Django sees it as
  request.headers["X-Request-ID"] (never what an untrusted peer sent), and adds
  it to the response. (Added to the request's headers, it made gunicorn handle one
  more header in every request.)
- ASGI: `asgi` wraps the application outside the kit's guard (workers/asgi.py),
  so its 413 and 499 lines carry it too.
request_scope also counts the requests in flight where one thread serves them
all (sync, gevent: observability/metrics.py).
A ContextVar holds it: per thread under gthread, per greenlet under gevent, per
task under asgi (Django's sync views get a copy of the task's context).
"""

import functools
import inspect
import ipaddress
import itertools
import os
import re
from contextvars import ContextVar

from config.gunicorn.observability.metrics import tally

HEADER = "X-Request-ID"
WSGI_NAME = HEADER.upper()  # as gunicorn's parser spells header names
ENVIRON_KEY = "HTTP_" + WSGI_NAME.replace("-", "_")  # as the WSGI environ names it
ACCEPTED = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")  # no spaces or quotes: one token in a log

current = ContextVar("request_id", default=None)


class Ids:
    """The IDs this process makes: a random prefix (new in each forked worker), then a count."""

    def __init__(self):
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self):
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)

    def new(self):
        return f"{self.prefix}{next(self.counter):016x}"


ids = Ids()


class TrustedPeers:
    """Whether a peer address may name the request ID: FORWARDED_ALLOW_IPS, as gunicorn reads it."""

    def __init__(self, allowed):
        if isinstance(allowed, str):
            allowed = allowed.split(",")
        allowed = [item.strip() for item in allowed if item.strip()]
        self.anyone = "*" in allowed
        self.networks = [
            ipaddress.ip_network(item, strict=False) for item in allowed if item != "*"
        ]
        self.known = {}

    def __call__(self, address):
        if self.anyone or address is None:
            return self.anyone
        trusted = self.known.get(address)
        if trusted is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return False
            trusted = any(ip in network for network in self.networks)
            if len(self.known) > 1024:  # addresses of the whole internet: keep it bounded
                self.known.clear()
            self.known[address] = trusted
        return trusted


def chosen(sent, trusted):
    """The ID of a request that `sent` this X-Request-ID (or None), from a `trusted` peer or not."""
    if sent is not None and trusted and ACCEPTED.fullmatch(sent):
        return sent
    return ids.new()


def request_scope(handle_request):
    """Decorate a WSGI worker's handle_request: the request ID is set for the whole request.

    The ID is in `current` until the request ends; `wsgi` gives it to the application.
    """
    position = list(inspect.signature(handle_request).parameters).index("req") - 1

    @functools.wraps(handle_request)
    def handling(self, *args):
        req = args[position]
        sent = None
        for name, value in req.headers:
            if name == WSGI_NAME:
                sent = value
                break
        trusted = False
        if sent is not None:
            peer = req.peer_addr[0] if isinstance(req.peer_addr, tuple) else None  # Unix socket
            trusted = peer is None or trusted_peer(peer)
        token = current.set(chosen(sent, trusted))
        counting = tally.counting
        if counting:
            tally.in_flight += 1
            if tally.busy_from is not None:
                tally.busy_from()
        try:
            return handle_request(self, *args)
        finally:
            if counting:
                tally.in_flight -= 1
            current.reset(token)

    return handling


def trust(forwarded_allow_ips):
    """Believe X-Request-ID from these peers (gunicorn's forwarded_allow_ips), in this process."""
    global trusted_peer
    trusted_peer = TrustedPeers(forwarded_allow_ips)


trusted_peer = TrustedPeers("")  # until the worker says whom it trusts: no one


def wsgi(application):
    """The WSGI `application`, given the request's ID, and with it in each response's headers."""

    def with_request_id(environ, start_response):
        request_id = current.get()
        if request_id is None:  # a worker class without request_scope: what was sent, if any
            request_id = environ.get(ENVIRON_KEY)
            if request_id is None:
                return application(environ, start_response)
        else:
            environ[ENVIRON_KEY] = request_id

        def start(status, headers, exc_info=None):
            headers.append((HEADER, request_id))
            return start_response(status, headers, exc_info)

        return application(environ, start)

    return with_request_id
