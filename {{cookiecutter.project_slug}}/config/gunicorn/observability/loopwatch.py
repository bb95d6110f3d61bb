"""gevent's event loop, watched: a view that blocks it is counted and named in the log.

A greenlet that computes, or calls a C library that does its own I/O, holds the
whole worker: every other request waits. gevent's own monitor thread
(gevent.config.monitor_thread) checks every MAX_BLOCKING_TIME_S whether the loop
has switched greenlets; when it has not, it reports the greenlet that held it
with its stack (EventLoopBlocked), and again every MAX_BLOCKING_TIME_S while the block lasts
(a view computing for 1.7 s gave 4 to 6 reports, one line each). Here a block
becomes, once the loop runs again, one warning line naming the view
(routes.running_views) and the blocking stack, and one count in
gunicorn_event_loop_blocked_total{route}.

The monitor formats every thread's stack before it reports, a slice of the GIL
at a time against the blocking view: the report of a 0.3 s block came after the
view had returned, and a 2.5 s block's second report after the loop had run
again. So the view a greenlet last ran is kept (weakly, gone with the greenlet),
not only while it runs, and a request's blocks are reported once.

Cost: the monitor thread wakes every 0.1 s, and greenlet switches are traced.
Measured on /healthz, the preset served with and without it at once on one CPU
(CPU time a request, medians of 3): 2.8 to 3.8 % of a gevent worker's throughput,
most of it the thread waking ten times a second (waking once a second, 1.3 %);
without the switch tracer, nothing measurable. A tenth of a second is what a
block must last to be worth a line, so the thread keeps that pace.
"""

import logging
import weakref

from config.gunicorn.observability import metrics, routes

MAX_BLOCKING_TIME_S = 0.1
STACK_LINES = 12  # the innermost frames: where it blocked, and the view above it
logger = logging.getLogger(__name__)
watching = False
# greenlet -> the request (routes.py's serial; None outside one) whose block it reported.
# Written by the monitor thread; a block outside a request is forgotten once logged.
reported = weakref.WeakKeyDictionary()


def watch():
    """Start gevent's monitor in this worker (after the fork: threads do not survive one)."""
    global watching
    import gevent
    from gevent import events

    gevent.config.monitor_thread = True
    gevent.config.max_blocking_time = MAX_BLOCKING_TIME_S
    gevent.config.print_blocking_reports = False  # reported through logging instead
    hub = gevent.get_hub()
    events.subscribers.append(lambda event: blocked(hub, event))
    routes.running_views = weakref.WeakKeyDictionary()
    hub.start_periodic_monitoring_thread()
    watching = True


def blocked(hub, event):
    """In the monitor thread: the first report of a request's block hands the loop a
    callback that logs it when it runs again; the later ones are dropped."""
    from gevent.events import EventLoopBlocked

    if not isinstance(event, EventLoopBlocked):
        return
    request, route = routes.running_views.get(event.greenlet, (None, None))
    if event.greenlet in reported and reported[event.greenlet] == request:
        return
    reported[event.greenlet] = request
    info = list(event.info)
    hub.loop.run_callback_threadsafe(report, event.greenlet, request, route or "no view", info)


def report(greenlet, request, route, info):
    if request is None:
        reported.pop(greenlet, None)
    tally = metrics.tally
    tally.loop_blocks[route] = tally.loop_blocks.get(route, 0) + 1
    lines = "\n".join(info).splitlines()
    stack = [line.strip() for line in lines if line.strip().startswith('File "')]
    logger.warning(
        "Event loop blocked for over %s s by %s: %s",
        MAX_BLOCKING_TIME_S,
        route,
        " | ".join(stack[-STACK_LINES:]) or "no stack",
    )
