"""Which route a request took, by name: the label of its metrics, never its raw path.

RouteMiddleware, first in MIDDLEWARE, reads Django's resolver match (its
view_name: `demo-io`, `admin:index`) and leaves it where the worker reads it
once the response is sent: the WSGI environ, or the ASGI scope. The probes,
answered before URL routing, are named after themselves; anything else that
matched no route is `unmatched`. A project that does not add the middleware
gets `unrouted` for every request.
"""

import sys

KEY = "kit.route"
PROBES = {"/healthz": "healthz", "/readyz": "readyz", "/healthz/": "healthz", "/readyz/": "readyz"}
UNMATCHED = "unmatched"
UNROUTED = "unrouted"


def of_path(path):
    """The name of a request Django never routed: a probe, or unmatched."""
    return PROBES.get(path, UNMATCHED)


# The gevent worker's requests, by greenlet, while their view runs: the event-loop
# monitor (loopwatch.py) names the view that blocked the loop from here. None unless
# it watches.
running_views = None


class RouteMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            response = self.get_response(request)
        finally:
            if running_views is not None:
                running_views.pop(current_greenlet(), None)
        match = request.resolver_match
        route = match.view_name if match is not None else of_path(request.path_info)
        getattr(request, "scope", request.META)[KEY] = route
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        if running_views is not None:
            running_views[current_greenlet()] = request.resolver_match.view_name


def current_greenlet():
    return sys.modules["gevent"].getcurrent()
