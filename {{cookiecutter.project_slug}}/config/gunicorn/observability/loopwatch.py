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

Cost: the monitor thread wakes every 0.1 s, reads one or two /proc files (LoopMonitor),
and greenlet switches are traced. Measured on /healthz against stock gunicorn, four
servers of two workers at once on one CPU: 2.3 to 3.7 % more CPU a request with the
monitor than without it (two runs of 5 rounds of 8 s), the thread's wakes and the
switch tracer, not measured apart. There, before, it also reported 109 to 241 blocks
in such a run, none of them a view's: workers waiting for a CPU (LoopMonitor tells
those apart now) and connections keeping the loop (they take turns now: TURN_S in
workers/gevent.py), each report 1.4 ms of CPU to format. A tenth of a second is what
a block must last to be worth a line, so the thread keeps that pace.
"""

import logging
import os
import threading
import time
import weakref

from gevent._monitor import PeriodicMonitoringThread  # private: see LoopMonitor

from config.gunicorn.observability import metrics, routes

MAX_BLOCKING_TIME_S = 0.1
# What the loop's thread must have held, its CPU or a call, before a check: see LoopMonitor.
HELD_S = MAX_BLOCKING_TIME_S / 2
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

    gevent.config.max_blocking_time = MAX_BLOCKING_TIME_S
    gevent.config.print_blocking_reports = False  # reported through logging instead
    hub = gevent.get_hub()
    events.subscribers.append(lambda event: blocked(hub, event))
    routes.running_views = weakref.WeakKeyDictionary()
    if hub.periodic_monitoring_thread is not None:  # gevent's own (GEVENT_MONITOR_THREAD_ENABLE)
        hub.periodic_monitoring_thread.kill()
    hub.periodic_monitoring_thread = LoopMonitor(hub)
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


class LoopMonitor(PeriodicMonitoringThread):
    """gevent's monitor thread, that does not take a loop waiting for a CPU for a blocked one.

    gevent reports a block when no greenlet switched between two of its checks, 0.1 s
    apart in wall time. A worker whose thread waits for a CPU (a CPU limit throttling
    it, more busy processes than CPUs) switches no greenlet either, and gevent blamed
    whatever greenlet had run last: a worker held to a fifth of a CPU (a container's
    CPU limit) under wrk on /healthz logged 11 to 34 blocks in 8 s, "by no view", none
    of them one, each 1.4 ms of CPU to format (every thread's stack) when CPU was what
    it lacked. So a check waits until the loop's thread has held the loop for HELD_S,
    half a check's time, since the last one: see LoopThreadTime. A real block is still
    seen while throttled: 0.7 s of pure Python at a fifth of a CPU is reported once.

    gevent has no public way to change its check (Hub.start_periodic_monitoring_thread
    makes its own class), so this subclasses its private class and overrides
    monitor_blocking; the project's tests run it on the gevent it has (versions.py: 26.x).
    """

    def __init__(self, hub):
        self.loop_thread = LoopThreadTime(threading.get_native_id())  # this one: the hub's
        super().__init__(hub)  # starts the thread

    def monitor_blocking(self, hub):
        if not self.loop_thread.held(HELD_S):
            return None  # gevent's count of switches carries on to the next check
        return super().monitor_blocking(hub)


class LoopThreadTime:
    """How long the loop's thread held the loop since the last look that found enough.

    From Linux's scheduler statistics (/proc/self/task/<id>/schedstat and stat): its
    time on a CPU, and the time it waited for one, which Linux counts once the thread
    runs again (throttled time included). Enough time on a CPU is enough. Otherwise the
    thread held the time since, less the waits counted so far, if it is asleep (in a
    call: a C library's own I/O is a block too); if it can run, the wait it is in is
    not counted yet, and it held only its time on a CPU. Without these files (another
    system), every look finds enough: every check is made, as gevent makes them.

    A look is one read, two where the thread ran too little: the monitor's thread gives
    up the GIL for each, and a view computing in the loop's thread keeps it for up to
    5 ms before handing it back, while the block's report waits (with a look of twelve
    reads, one report in three of a 0.7 s block came after the block had ended).
    """

    def __init__(self, native_id):
        task = f"/proc/self/task/{native_id}"
        try:
            self.schedstat = os.open(f"{task}/schedstat", os.O_RDONLY)
            self.stat = os.open(f"{task}/stat", os.O_RDONLY)
        except OSError:
            self.schedstat = self.stat = None  # not Linux, or no scheduler statistics
        self.since = self.read()

    def read(self):
        """(now, ran, waited) in nanoseconds, or None."""
        if self.schedstat is None:
            return None
        try:
            ran, waited = (int(field) for field in os.pread(self.schedstat, 128, 0).split()[:2])
        except (OSError, ValueError):
            return None
        return time.monotonic_ns(), ran, waited

    def runnable(self):
        try:
            return os.pread(self.stat, 512, 0).rsplit(b")", 1)[1].split()[0] == b"R"
        except (OSError, IndexError):
            return False

    def held(self, seconds):
        now = self.read()
        if now is None or self.since is None:
            return True
        (then, ran_then, waited_then), (later, ran, waited) = self.since, now
        enough = seconds * 1e9
        held_apart_from_waits = (later - then) - (waited - waited_then)
        if ran - ran_then < enough and (held_apart_from_waits < enough or self.runnable()):
            return False
        self.since = now
        return True
