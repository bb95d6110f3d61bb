"""The asgi preset's requests: their ID, their metrics, in one ASGI middleware.

Outside the kit's guard (workers/asgi.py), so that what guard answers itself (a
413, a 408, a 499) is counted and carries the ID. gunicorn's ASGI worker logs
the access line after the application returns, in the same task: the ID stays
set until the next request on the connection sets its own.
"""

import time

from config.gunicorn.observability import metrics, requestid, routes

HEADER = requestid.HEADER.lower().encode()


def observed(application):
    """The ASGI `application`, with request IDs and metrics."""

    async def observing(scope, receive, send):
        if scope["type"] != "http":
            return await application(scope, receive, send)
        started = time.perf_counter()
        sent = None
        for name, value in scope["headers"]:
            if name == HEADER:
                sent = value.decode("latin-1")
                break
        client = scope.get("client")
        peer = client[0] if client else None
        trusted = sent is not None and (peer is None or requestid.trusted_peer(peer))
        request_id = requestid.chosen(sent, trusted)
        requestid.current.set(request_id)
        encoded = request_id.encode()
        status = 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, encoded)]
            await send(message)

        tally = metrics.tally
        tally.in_flight += 1
        try:
            await application(scope, receive, sending)
        finally:
            tally.in_flight -= 1
            if tally.recording:
                route = scope.get(routes.KEY) or routes.UNROUTED
                metrics.record_request(
                    route, scope["method"], str(status), time.perf_counter() - started
                )

    return observing
