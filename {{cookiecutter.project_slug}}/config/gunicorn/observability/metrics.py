"""What a worker measures, and how it reaches the instance's one scrape (server.py).

prometheus_client's multiprocess mode: each worker writes its values to files of
its own in the instance's directory (files.py), which the metrics server sums.
Writing one value there costs 1.5 us (a lock, a pid check, an mmap write), and a
histogram observation two of them: 2.9 us a request, more than the whole access
line (accesslog.py). So a request costs a dictionary update here, 0.2 us
(`Histograms.observe`), and the worker adds what accumulated to the files on its
heartbeat, at most once a second (`Worker.flush`): a scrape sees a request a
second after it ended at most. A sync worker beats between two requests, and may
then wait 15 s for the next connection without one: it adds what it served as it
begins to wait (`waiting`).

The gauges (slots busy, requests in flight, the database pool, memory) are read
at the same heartbeat: what each worker model's busy slots are is `occupancy()`.
"""

import bisect
import importlib
import sys
import threading
import time

# Seconds. Prometheus's defaults, plus the steps between 50 ms and 1 s where the
# presets' p99s fall (the README's tables), for histogram_quantile to interpolate in.
REQUEST_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30,
)  # fmt: skip
POOL_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Any other method a client sends is counted as "other": label values an attacker cannot grow.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
FLUSH_EVERY_S = 1.0
EXITS_HELP = "Workers ended, by reason: recycled (memory), max_requests, timeout, shutdown, crash"


class Histograms:
    """Observations not yet written: label values -> [sum, count in each bucket, +Inf]."""

    def __init__(self, bounds):
        self.bounds = bounds
        self.pending = {}
        self.lock = threading.Lock()  # gthread's threads observe at once

    def observe(self, key, value):
        index = bisect.bisect_left(self.bounds, value) + 1  # le: the first bound >= value
        with self.lock:
            counts = self.pending.get(key)
            if counts is None:
                counts = self.pending[key] = [0.0] * (len(self.bounds) + 2)
            counts[0] += value
            counts[index] += 1

    def take(self):
        with self.lock:
            taken, self.pending = self.pending, {}
        return taken


class Tally:
    """This worker's counts, shared by the request paths and the heartbeat."""

    def __init__(self):
        self.requests = Histograms(REQUEST_BUCKETS)
        self.pool_waits = Histograms(POOL_WAIT_BUCKETS)
        self.pool_timeouts = 0
        self.loop_blocks = {}  # route: times the gevent loop was seen blocked
        self.in_flight = 0  # where one thread serves every request: sync, gevent, asgi
        self.counting = False  # whether requestid.request_scope counts in_flight (not gthread)
        self.busy_from = None  # sync: called as a request starts while the worker is marked idle
        self.recording = False  # metrics on, in a worker


tally = Tally()
worker_metrics = None  # this worker's Worker, once metrics are on (hooks.py)


def route_method(method):
    return method if method in METHODS else "other"


def record_request(route, method, status, seconds):
    """One request answered (accesslog.py for WSGI, observability/asgi.py for ASGI)."""
    tally.requests.observe((route, route_method(method), status), seconds)


def add_observations(child, counts):
    """Add accumulated observations to a prometheus_client Histogram child.

    prometheus_client offers one observation at a time; this writes a second's worth
    at once through the child's sum and bucket values, the attributes its own
    observe() uses (tests/test_observability.py checks them on the version pinned).
    """
    child._sum.inc(counts[0])
    for bucket, count in zip(child._buckets, counts[1:], strict=True):
        if count:
            bucket.inc(count)


class Worker:
    """A worker's metrics, created in the worker (never in the master: its files would stay)."""

    def __init__(self, worker):
        from prometheus_client import Counter, Gauge, Histogram

        from config.gunicorn.workers.recycle import resident_bytes

        self.resident_bytes = resident_bytes
        self.worker = worker
        self.model = worker.model
        self.next_flush = 0.0
        self.last_flush = time.monotonic()
        self.children = {}
        self.requests = Histogram(
            "gunicorn_request_duration_seconds",
            "Requests answered, by Django route name, method and status, and their time in "
            "the worker (the _count is the number of requests)",
            ["route", "method", "status"],
            buckets=REQUEST_BUCKETS,
            registry=None,
        )
        live = {"registry": None, "multiprocess_mode": "livesum"}
        self.in_flight = Gauge("gunicorn_requests_in_flight", "Requests being served", **live)
        self.busy = Gauge(
            "gunicorn_slots_busy",
            "Busy slots: sync workers, gthread threads, gevent connections, asgi requests",
            **live,
        )
        self.slots = Gauge("gunicorn_slots", "Slots of the preset's worker model", **live)
        self.pool_size = Gauge(
            "gunicorn_db_pool_connections", "Connections the workers' pools may open", **live
        )
        self.pool_in_use = Gauge(
            "gunicorn_db_pool_connections_in_use", "Pooled connections lent to requests", **live
        )
        self.pool_waiting = Gauge(
            "gunicorn_db_pool_waiting", "Requests waiting for a pooled connection", **live
        )
        self.pool_wait = Histogram(
            "gunicorn_db_pool_wait_seconds",
            "Time each request waited for a pooled connection (0: one was free)",
            buckets=POOL_WAIT_BUCKETS,
            registry=None,
        )
        self.pool_timeouts = Counter(
            "gunicorn_db_pool_timeouts",
            "Requests that waited DJANGO_DB_POOL_TIMEOUT for a pooled connection: each a 503",
            registry=None,
        )
        self.loop_blocked = Counter(
            "gunicorn_event_loop_blocked",
            "Times gevent's monitor found the event loop blocked past its max_blocking_time, "
            "by the route of the request that blocked it",
            ["route"],
            registry=None,
        )
        self.resident = Gauge(
            "gunicorn_worker_resident_bytes",
            "Each worker's resident memory",
            registry=None,
            multiprocess_mode="liveall",  # a pid label each, gone with the worker
        )
        self.boots = Counter("gunicorn_worker_boots", "Workers started", registry=None)
        self.exits = Counter(
            "gunicorn_worker_exits",
            EXITS_HELP,
            ["reason"],
            registry=None,
        )
        self.reported_timeouts = 0
        self.boots.inc()
        self.slots.set(slots(worker))
        tally.counting = self.model in ("sync", "gevent")
        if self.model == "sync":
            tally.busy_from = self.sync_busy

    def heartbeat(self):
        now = time.monotonic()
        if now >= self.next_flush:
            self.next_flush = now + FLUSH_EVERY_S
            self.flush()

    def flush(self):
        now = time.monotonic()
        served_s = self.flush_requests()
        elapsed, self.last_flush = now - self.last_flush, now
        for counts in tally.pool_waits.take().values():
            add_observations(self.pool_wait, counts)
        timeouts = tally.pool_timeouts
        if timeouts != self.reported_timeouts:
            self.pool_timeouts.inc(timeouts - self.reported_timeouts)
            self.reported_timeouts = timeouts
        blocks, tally.loop_blocks = tally.loop_blocks, {}
        for route, count in blocks.items():
            self.loop_blocked.labels(route).inc(count)
        busy, in_flight = occupancy(self.worker)
        if self.model == "gthread":
            # Its heartbeat comes as a request ends, when a thread has just been freed: a
            # sample then would always miss one. The time its threads served since the last
            # flush instead (Little's law: the mean number of busy threads).
            busy = served_s / elapsed if elapsed > 0 else 0.0
        if self.model != "sync":  # its heartbeat comes between two requests: see sync_busy
            self.busy.set(busy)
            self.in_flight.set(in_flight)
        size = in_use = waiting = 0
        for pool in pools():
            size += pool.max_size
            in_use += pool.lent
            waiting += pool.waiting
        self.pool_size.set(size)
        self.pool_in_use.set(in_use)
        self.pool_waiting.set(waiting)
        self.resident.set(self.resident_bytes())

    def flush_requests(self):
        """Write the requests that ended since the last flush; the seconds they took."""
        served_s = 0.0
        for key, counts in tally.requests.take().items():
            child = self.children.get(key)
            if child is None:
                child = self.children[key] = self.requests.labels(*key)
            add_observations(child, counts)
            served_s += counts[0]
        return served_s

    def sync_busy(self):
        """sync: a request starts in a worker that was waiting for a connection.

        A sync worker is busy from there until it waits again (`waiting`), however many
        requests it serves meanwhile: two gauge writes a burst. Writing them as each request
        began and ended, and its observations as it ended, cost a sync worker 9 % of its
        throughput on /healthz (CPU time a request: 442 us, 402 with the metrics off); now
        417 against 415, within the noise.
        """
        tally.busy_from = None
        self.busy.set(1)
        self.in_flight.set(1)

    def sync_waiting(self):
        self.flush_requests()
        if tally.busy_from is None:
            tally.busy_from = self.sync_busy
            self.busy.set(0)
            self.in_flight.set(0)

    def exited(self, reason):
        self.exits.labels(reason).inc()
        self.flush()


def waiting():
    """The sync worker waits for its next connection: what it served is written now."""
    if worker_metrics is not None:
        worker_metrics.sync_waiting()


def slots(worker):
    """The requests (gevent: connections) a worker can hold at once, by its worker model.

    asgi has no limit of its own: its slots are worker_connections, a nominal figure
    (1,000), so that its saturation says how far past that it runs.
    """
    model = getattr(worker, "model", None)
    if model == "sync":
        return 1
    if model == "gthread":
        return worker.cfg.threads
    return worker.cfg.worker_connections


def occupancy(worker):
    """(busy slots, requests in flight) in `worker` now."""
    model = getattr(worker, "model", None)
    if model == "gthread":
        return worker.busy, worker.busy  # connections its threads hold: workers/gthread.py
    if model == "gevent":
        return len(worker.connections), tally.in_flight  # workers/gevent.py
    return tally.in_flight, tally.in_flight


def pools():
    """This process's database pools (database/pooled/), if the settings use them."""
    module = sys.modules.get(POOL_MODULE)
    return module.pools() if module is not None else ()


POOL_MODULE = "config.gunicorn.database.pooled.base"


def measure_pool_waits():
    """Time each request's wait for a pooled connection, and count those that gave up.

    The pool tells of each loan (its on_loan hook): lent at once, after a wait for a
    slot, or given up after DJANGO_DB_POOL_TIMEOUT (an OperationalError: a 503).
    """
    try:
        pooled = importlib.import_module(POOL_MODULE)
    except ImportError:  # no PostgreSQL driver: no pool either
        return
    pooled.ConnectionPool.on_loan = staticmethod(record_loan)


def record_loan(waited_s, gave_up):
    tally.pool_waits.observe((), waited_s)
    if gave_up:
        with tally.pool_waits.lock:
            tally.pool_timeouts += 1
