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
- DJANGO_DB_STATEMENT_TIMEOUT (seconds; 0: none): PostgreSQL cancels a query
  that runs longer, and the request gets a 500 that reaches error reporting.
  No preset's timeout ends a slow query (sync's kills the whole worker, with
  no trace of the query; gthread's, gevent's and asgi's do not bound a
  request), and a load balancer gives up after 60 s while the query goes on
  holding its connection. The presets set 20 s when it is unset, under
  sync's 30 s worker timeout; outside them (manage.py migrate, a shell) there
  is no limit unless you set one. Sent as a connection option, which PgBouncer
  does not pass on: behind it, set it on the role (ALTER ROLE ... SET
  statement_timeout).
- DJANGO_DB_TRANSACTION_POOLING=true, behind PgBouncer in transaction mode:
  what Django's docs require there (DISABLE_SERVER_SIDE_CURSORS) and psycopg's
  (no prepared statements). The pools stay: they bound the connections to
  PgBouncer, whose own pool bounds those to PostgreSQL.
- Always: a 5 s connect timeout, so that a readiness probe answers in time.

Any engine built on Django's PostgreSQL backend is pooled the same way, the
engine kept (PostGIS's, a backend that wraps PostgreSQL's for metrics: the
ENGINE names "postgresql" or "postgis"). Other entries are returned as they
are.
"""

import os
from importlib.util import find_spec

from django.core.exceptions import ImproperlyConfigured

from config.gunicorn.environment import BadSetting, boolean, positive_number, whole_number

POOL_ENGINE = f"{__package__}.pooled"
POSTGRESQL_ENGINE = "django.db.backends.postgresql"
CONNECT_TIMEOUT_S = 5
# Time for a burst to drain (1000 requests of a gevent worker, 20 connections, 50 ms
# each: 2.5 s), well short of the 60 s after which load balancers give up themselves.
DEFAULT_POOL_TIMEOUT_S = 10.0
STATEMENT_TIMEOUT = "DJANGO_DB_STATEMENT_TIMEOUT"
DEFAULT_STATEMENT_TIMEOUT_S = 20  # the presets' default: see above


def postgresql_engine(engine):
    """Whether `engine` (a DATABASES ENGINE) is PostgreSQL's, or one built on it.

    By name, since the settings cannot import a backend while they load (PostGIS's
    reads the settings); database/verify.py checks the vendor itself at start-up.
    """
    return engine == POOL_ENGINE or "postgresql" in engine or "postgis" in engine


def statement_timeout_default(environ=os.environ):
    """(variable, value) that the presets export when the environment sets no timeout."""
    if (environ.get(STATEMENT_TIMEOUT) or "").strip():
        return STATEMENT_TIMEOUT, environ[STATEMENT_TIMEOUT]
    return STATEMENT_TIMEOUT, str(DEFAULT_STATEMENT_TIMEOUT_S)


def pooled(database, environ=os.environ):
    """`database` (a DATABASES entry) as the master's plan in `environ` wants it: a copy."""
    database = {**database, "OPTIONS": {**database.get("OPTIONS", {})}}
    try:
        pool_size = whole_number(environ, "DJANGO_DB_POOL_SIZE", 1, 10_000)
        pool_timeout = positive_number(environ, "DJANGO_DB_POOL_TIMEOUT", DEFAULT_POOL_TIMEOUT_S)
        statement_timeout = positive_number(environ, STATEMENT_TIMEOUT, 0, allow_zero=True)
        transaction_pooling = boolean(environ, "DJANGO_DB_TRANSACTION_POOLING")
    except BadSetting as exc:
        raise ImproperlyConfigured(str(exc)) from None
    if pool_size is not None:
        # Each request gives its connection back at its end: to the pool, or closed where
        # there is none (SQLite). Kept, it would stay with its greenlet or ASGI thread.
        database["CONN_MAX_AGE"] = 0
    if not postgresql_engine(database.get("ENGINE", "")):
        return database
    if not database.get("NAME"):
        raise ImproperlyConfigured(
            "the PostgreSQL database has no name (DATABASE_URL): add it after the host, "
            "e.g. postgres://user:password@host:5432/name"
        )
    database["OPTIONS"].setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    options = database["OPTIONS"].get("options", "")
    if statement_timeout and not transaction_pooling and "statement_timeout" not in options:
        milliseconds = round(statement_timeout * 1000)
        database["OPTIONS"]["options"] = f"{options} -c statement_timeout={milliseconds}".strip()
    if transaction_pooling:
        # A transaction pooler hands each transaction to any server connection: nothing may
        # outlive one (server-side cursors, prepared statements).
        database["DISABLE_SERVER_SIDE_CURSORS"] = True
        if psycopg3():
            database["OPTIONS"]["prepare_threshold"] = None
    if pool_size is None:
        return database
    database["CONN_HEALTH_CHECKS"] = False
    engine = database["ENGINE"]
    if engine != POOL_ENGINE:
        database["ENGINE"] = POOL_ENGINE
        database["POOL"] = {"ENGINE": engine}
    database["OPTIONS"].pop("pool", None)  # Django's own: one pool is enough
    database["POOL"] = {**database.get("POOL", {}), "max_size": pool_size, "timeout": pool_timeout}
    return database


def psycopg3():
    """Whether Django's PostgreSQL backend uses psycopg 3: it does whenever it is installed."""
    return find_spec("psycopg") is not None
