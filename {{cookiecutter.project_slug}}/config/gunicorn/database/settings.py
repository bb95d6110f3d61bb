"""Django settings that do what the gunicorn master planned: `pooled()`, for DATABASES.

    from config.gunicorn.database.settings import pooled

    DATABASES = {"default": pooled(dj_database_url.config(conn_max_age=600))}

It takes a DATABASES entry as your settings build it (plain os.environ,
dj-database-url, environs: anything) and returns it adjusted to the plan the
master exported (see plan.py), reading only the environment:

- DJANGO_DB_POOL_SIZE set (gevent, asgi, and gthread beyond its budget): a pool
  of that size per process, this kit's (pooled/: it fails a request at once
  when the database is unreachable, where Django's own pool keeps it waiting),
  CONN_MAX_AGE 0 (a connection goes back to the pool at the end of each
  request), no health check per loan (that round trip cost 15 % of the
  throughput: a connection the server closed fails one request, a 503, and is
  dropped).
- DJANGO_DB_POOL_TIMEOUT (10 s): how long a request waits for a pooled
  connection before its 503.
- DJANGO_DB_TRANSACTION_POOLING=true, behind PgBouncer in transaction mode:
  what Django's docs require there (DISABLE_SERVER_SIDE_CURSORS) and psycopg's
  (no prepared statements). The pools stay: they bound the connections to
  PgBouncer, whose own pool bounds those to PostgreSQL.
- Always: a 5 s connect timeout, so that a readiness probe answers in time.

Entries that are not PostgreSQL are returned as they are.
"""

import os
from importlib.util import find_spec

from django.core.exceptions import ImproperlyConfigured

from config.gunicorn.environment import BadSetting, boolean, positive_number, whole_number

POOL_ENGINE = f"{__package__}.pooled"
POSTGRESQL_ENGINES = ("django.db.backends.postgresql", POOL_ENGINE)
CONNECT_TIMEOUT_S = 5
# Time for a burst to drain (1000 requests of a gevent worker, 20 connections, 50 ms
# each: 2.5 s), well short of the 60 s after which load balancers give up themselves.
DEFAULT_POOL_TIMEOUT_S = 10.0


def pooled(database, environ=os.environ):
    """`database` (a DATABASES entry) as the master's plan in `environ` wants it: a copy."""
    database = {**database, "OPTIONS": {**database.get("OPTIONS", {})}}
    try:
        pool_size = whole_number(environ, "DJANGO_DB_POOL_SIZE", 1, 10_000)
        pool_timeout = positive_number(environ, "DJANGO_DB_POOL_TIMEOUT", DEFAULT_POOL_TIMEOUT_S)
        transaction_pooling = boolean(environ, "DJANGO_DB_TRANSACTION_POOLING")
    except BadSetting as exc:
        raise ImproperlyConfigured(str(exc)) from None
    if pool_size is not None:
        # Each request gives its connection back at its end: to the pool, or closed where
        # there is none (SQLite). Kept, it would stay with its greenlet or ASGI thread.
        database["CONN_MAX_AGE"] = 0
    if database.get("ENGINE") not in POSTGRESQL_ENGINES:
        return database
    if not database.get("NAME"):
        raise ImproperlyConfigured(
            "the PostgreSQL database has no name (DATABASE_URL): add it after the host, "
            "e.g. postgres://user:password@host:5432/name"
        )
    database["OPTIONS"].setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    if transaction_pooling:
        # A transaction pooler hands each transaction to any server connection: nothing may
        # outlive one (server-side cursors, prepared statements).
        database["DISABLE_SERVER_SIDE_CURSORS"] = True
        if psycopg3():
            database["OPTIONS"]["prepare_threshold"] = None
    if pool_size is None:
        return database
    database["CONN_HEALTH_CHECKS"] = False
    database["ENGINE"] = POOL_ENGINE
    database["OPTIONS"].pop("pool", None)  # Django's own: one pool is enough
    database["POOL"] = {"max_size": pool_size, "timeout": pool_timeout}
    return database


def psycopg3():
    """Whether Django's PostgreSQL backend uses psycopg 3: it does whenever it is installed."""
    return find_spec("psycopg") is not None
