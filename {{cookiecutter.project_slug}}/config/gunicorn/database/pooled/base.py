"""PostgreSQL with a bounded connection pool per process, for psycopg 3 and psycopg2 alike.

Configured by DATABASES[alias]["POOL"] = {"max_size": N, "timeout": seconds,
"ENGINE": the engine it pools}: Django's PostgreSQL backend by default, or any
backend built on it (PostGIS's, one that wraps it for metrics), which keeps all
it does and gains the pool.
At most N connections are open per process. A request that finds all of them
busy waits up to `timeout` seconds, then gets an OperationalError, which
DatabaseUnavailableMiddleware answers with a 503. As with Django's pool,
CONN_MAX_AGE must be 0: a connection goes back to the pool at the end of each
request.

Why not Django's own pool (OPTIONS["pool"], psycopg_pool)? It needs psycopg 3,
and it opens connections in a background thread while requests wait: with
the database unreachable for 5 s, gevent and asgi requests waited 6.5 s for a
connection that never came. Here the request that needs a new connection
opens it itself, so an unreachable database is its 503 at once (0.1 s, with
either driver), and the pool is whole again as soon as the database is back.
Throughput is the same: gevent preset, psycopg 3, 500 connections on
/demo/db?ms=50 (wrk), 637 and 644 requests/s with this pool, 648 and 603 with
Django's.

Requests waiting for a connection get one in the order they came: a connection
given back goes straight to the oldest of them. (A semaphore lets a newcomer
take it first: with 500 clients on 40 connections, p50 was 58 ms, and 255
requests waited out the 10 s timeout.)

The pool uses threading primitives. gevent's monkey-patching makes them
cooperative, so one pool serves greenlets (gevent) and threads (gthread, ASGI).
"""

import threading
import time
from collections import deque
from functools import partial

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base
from django.db.utils import load_backend

TRANSACTION_STATUS_IDLE = 0  # libpq's PQTRANS_IDLE, as psycopg 3 and psycopg2 both report it
DEFAULT_ENGINE = "django.db.backends.postgresql"


class Waiter:
    """A request waiting for a slot: given an idle connection, or None to open one."""

    def __init__(self):
        self.ready = threading.Event()
        self.connection = None


class ConnectionPool:
    # Told of every loan: the seconds it waited for a slot, and whether it gave up (a 503).
    # The metrics set it (observability/metrics.py); None: nobody is told.
    on_loan = None

    def __init__(self, max_size, timeout):
        self.max_size = max_size
        self.timeout = timeout
        self._lock = threading.Lock()
        self._idle = []  # last in, first out: reuse the warmest connection
        self._lent = 0  # connections lent, or being opened, to requests
        self._waiting = deque()  # Waiters, oldest first

    def getconn(self, connect):
        """An idle connection, or a new one from `connect()`, within the size limit."""
        with self._lock:
            if self._idle or self._lent < self.max_size:
                self._lent += 1
                connection = self._idle.pop() if self._idle else None
                waiter = None
            else:
                waiter = Waiter()
                self._waiting.append(waiter)
        if waiter is None:
            self.report_loan(0.0)
        else:
            started = time.monotonic()
            try:
                connection = self._wait(waiter)
            except base.Database.OperationalError:
                self.report_loan(time.monotonic() - started, gave_up=True)
                raise
            self.report_loan(time.monotonic() - started)
        if connection is not None:
            return connection
        try:
            return connect()
        except BaseException:
            self._hand_over(None)
            raise

    def report_loan(self, waited_s, gave_up=False):
        if self.on_loan is not None:
            self.on_loan(waited_s, gave_up)

    @property
    def lent(self):
        """Connections lent to requests, or being opened for them."""
        return self._lent

    @property
    def waiting(self):
        """Requests waiting for a connection."""
        return len(self._waiting)

    def _wait(self, waiter):
        if not waiter.ready.wait(self.timeout):
            with self._lock:
                if waiter in self._waiting:  # else handed a slot just now: take it
                    self._waiting.remove(waiter)
                    raise base.Database.OperationalError(
                        f"connection pool exhausted: all {self.max_size} connections "
                        f"stayed busy for {self.timeout:g} s"
                    )
        return waiter.connection

    def putconn(self, connection):
        if connection.closed:
            connection = None
        elif connection.info.transaction_status != TRANSACTION_STATUS_IDLE:
            connection.close()  # a broken or abandoned transaction: never reuse it
            connection = None
        self._hand_over(connection)

    def _hand_over(self, connection):
        """Give a slot, with an idle connection or None, to the oldest waiter, else back."""
        with self._lock:
            if self._waiting:
                waiter = self._waiting.popleft()
                waiter.connection = connection
                waiter.ready.set()
                return
            self._lent -= 1
            if connection is not None:
                self._idle.append(connection)


_pools = {}  # per process, shared by every thread
_pools_lock = threading.Lock()


def pools():
    """This process's pools, one per database."""
    with _pools_lock:
        return list(_pools.values())


_wrappers = {}  # the pooled DatabaseWrapper class of each engine


class PooledConnections:
    """What a PostgreSQL DatabaseWrapper gains: connections from the pool, given back to it."""

    @property
    def connection_pool(self):
        # Keyed by database name too: tests switch NAME to the test database.
        key = (self.alias, self.settings_dict["NAME"])
        with _pools_lock:
            if key not in _pools:
                if self.settings_dict["CONN_MAX_AGE"] != 0:
                    # Kept by its thread or greenlet, a connection would never come back.
                    raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
                options = self.settings_dict["POOL"]
                _pools[key] = ConnectionPool(
                    max_size=options["max_size"], timeout=options["timeout"]
                )
            return _pools[key]

    def get_new_connection(self, conn_params):
        return self.connection_pool.getconn(partial(super().get_new_connection, conn_params))

    def _close(self):
        if self.connection is not None:
            with self.wrap_database_errors:
                self.connection_pool.putconn(self.connection)
            self.connection = None


def pooled_wrapper(engine):
    """The DatabaseWrapper of `engine`, pooled: one class per engine, made once."""
    with _pools_lock:
        if engine not in _wrappers:
            wrapped = load_backend(engine).DatabaseWrapper
            if wrapped.vendor != "postgresql":
                raise ImproperlyConfigured(f"{engine} is not PostgreSQL: it cannot be pooled here")
            _wrappers[engine] = type(
                "DatabaseWrapper",
                (PooledConnections, wrapped),
                {"__module__": __name__, "__qualname__": f"DatabaseWrapper[{engine}]"},
            )
        return _wrappers[engine]


class DatabaseWrapper:
    """What Django makes of ENGINE = this module's package: the pooled wrapper of POOL's engine."""

    def __new__(cls, settings_dict, *args, **kwargs):
        engine = settings_dict["POOL"].get("ENGINE", DEFAULT_ENGINE)
        return pooled_wrapper(engine)(settings_dict, *args, **kwargs)
