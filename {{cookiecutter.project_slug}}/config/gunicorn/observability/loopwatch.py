"""gevent's event loop, watched: a view that blocks it is counted and named in the log.

A greenlet that computes, or calls a C library that does its own I/O, holds the
whole worker: every other request waits. gevent's own monitor thread
(gevent.config.monitor_thread) checks every MAX_BLOCKING_TIME_S whether the loop
has switched greenlets; when it has not, it reports the greenlet that held it
with its stack (EventLoopBlocked). Here each report becomes, once the loop runs
again, one warning line naming the view (routes.running_views) and the
blocking stack, and a count in gunicorn_event_loop_blocked_total{route}.

Cost: the monitor thread wakes every 0.1 s, and greenlet switches are traced
(measured in the observability report: see README.md, "Operating it").
"""

import logging

from config.gunicorn.observability import metrics, routes

MAX_BLOCKING_TIME_S = 0.1
STACK_LINES = 12  # the innermost frames: where it blocked, and the view above it
logger = logging.getLogger(__name__)
watching = False


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
    routes.running_views = {}
    hub.start_periodic_monitoring_thread()
    watching = True


def blocked(hub, event):
    """In the monitor thread: hand the report to the loop, which logs it once it runs."""
    from gevent.events import EventLoopBlocked

    if isinstance(event, EventLoopBlocked):
        views = routes.running_views or {}
        route = views.get(event.greenlet, "no view")
        hub.loop.run_callback_threadsafe(report, route, event.blocking_time, list(event.info))


def report(route, seconds, info):
    tally = metrics.tally
    tally.loop_blocks[route] = tally.loop_blocks.get(route, 0) + 1
    lines = "\n".join(info).splitlines()
    stack = [line.strip() for line in lines if line.strip().startswith('File "')]
    logger.warning(
        "Event loop blocked for over %s s by %s: %s",
        seconds,
        route,
        " | ".join(stack[-STACK_LINES:]) or "no stack",
    )
