"""Which route a request took, by name: the label of its metrics, never its raw path.

RouteMiddleware, first in MIDDLEWARE, reads Django's resolver match (its
view_name: `demo-io`, `admin:index`) and leaves it where the worker reads it
once the response is sent: the WSGI environ, or the ASGI scope. The probes,
answered before URL routing, are named after themselves; anything else that
matched no route is `unmatched`. A project that does not add the middleware
gets `unrouted` for every request.
"""

import itertools
import sys

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

KEY = "kit.route"
PROBES = {"/healthz": "healthz", "/readyz": "readyz", "/healthz/": "healthz", "/readyz/": "readyz"}
UNMATCHED = "unmatched"
UNROUTED = "unrouted"


def of_path(path):
    """The name of a request Django never routed: a probe, or unmatched."""
    return PROBES.get(path, UNMATCHED)


# greenlet -> (its last request's serial, the view it ran, None before one): the event-loop
# monitor (loopwatch.py) names the view that blocked the loop from here, once the view may
# have returned. None unless it watches (the gevent worker).
running_views = None
serials = itertools.count(1)


class RouteMiddleware:
    """Sync under WSGI, async under ASGI: Django calls it without a thread hop either way.

    A sync-only middleware first in MIDDLEWARE made Django hop to a thread and back on
    every async request; the kit's three middlewares did (see config/gunicorn/asgi.py).
    """

    sync_capable = async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
            # Django would run the sync process_view in a thread under ASGI.
            self.process_view = self.process_view_async

    def __call__(self, request):
        if self.is_async:
            return self.respond_async(request)
        if running_views is not None:
            running_views[current_greenlet()] = (next(serials), None)
        return self.named(request, self.get_response(request))

    async def respond_async(self, request):
        return self.named(request, await self.get_response(request))

    @staticmethod
    def named(request, response):
        match = request.resolver_match
        route = match.view_name if match is not None else of_path(request.path_info)
        getattr(request, "scope", request.META)[KEY] = route
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        if running_views is not None:
            greenlet = current_greenlet()
            serial, _ = running_views[greenlet]
            running_views[greenlet] = (serial, request.resolver_match.view_name)

    async def process_view_async(self, request, view_func, view_args, view_kwargs):
        """Nothing to record: only the gevent worker's loop monitor reads the view, under WSGI."""


def current_greenlet():
    return sys.modules["gevent"].getcurrent()
