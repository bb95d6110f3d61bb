"""PostgreSQL over psycopg2 with a bounded connection pool per process.

Django's own pool (OPTIONS["pool"]) needs psycopg 3; this backend gives psycopg2
the same contract, configured by DATABASES[alias]["POOL"] = {"max_size": N,
"timeout": seconds}. At most N connections are open per process. A request that
finds all of them busy waits up to `timeout` seconds, then gets an
OperationalError, which DatabaseUnavailableMiddleware answers with a 503.

The pool uses threading primitives. gevent's monkey-patching makes them
cooperative, so one pool serves greenlets (gevent) and threads (gthread, ASGI).
"""

import threading
from functools import partial
from typing import ClassVar

from django.db.backends.postgresql import base
from psycopg2.extensions import TRANSACTION_STATUS_IDLE


class ConnectionPool:
    def __init__(self, max_size, timeout):
        self._slots = threading.BoundedSemaphore(max_size)
        self._idle = []  # last in, first out: reuse the warmest connection
        self._idle_lock = threading.Lock()
        self.max_size = max_size
        self.timeout = timeout

    def getconn(self, connect):
        """An idle connection, or a new one from `connect()`, within the size limit."""
        if not self._slots.acquire(timeout=self.timeout):
            raise base.Database.OperationalError(
                f"connection pool exhausted: all {self.max_size} connections "
                f"stayed busy for {self.timeout:g} s"
            )
        try:
            with self._idle_lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None or connection.closed:
                connection = connect()
        except BaseException:
            self._slots.release()
            raise
        return connection

    def putconn(self, connection):
        try:
            if connection.closed:
                return
            if connection.info.transaction_status != TRANSACTION_STATUS_IDLE:
                connection.close()  # a broken or abandoned transaction: never reuse it
                return
            with self._idle_lock:
                self._idle.append(connection)
        finally:
            self._slots.release()


class DatabaseWrapper(base.DatabaseWrapper):
    _psycopg2_pools: ClassVar[dict] = {}  # per process, shared by every thread
    _psycopg2_pools_lock = threading.Lock()

    @property
    def connection_pool(self):
        # Keyed by database name too: tests switch NAME to the test database.
        key = (self.alias, self.settings_dict["NAME"])
        with self._psycopg2_pools_lock:
            if key not in self._psycopg2_pools:
                options = self.settings_dict["POOL"]
                self._psycopg2_pools[key] = ConnectionPool(
                    max_size=options["max_size"], timeout=options["timeout"]
                )
            return self._psycopg2_pools[key]

    def get_new_connection(self, conn_params):
        return self.connection_pool.getconn(partial(super().get_new_connection, conn_params))

    def _close(self):
        if self.connection is not None:
            with self.wrap_database_errors:
                self.connection_pool.putconn(self.connection)
            self.connection = None
