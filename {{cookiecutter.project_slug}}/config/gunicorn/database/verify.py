"""Whether the Django settings do what the database plan says, read from DATABASES itself.

The master asks once the settings are loaded (startup.py) and refuses to start,
in one line, on the first problem. What counts is what Django will do with the
settings, not what the environment hoped: a pool of the planned size on every
PostgreSQL database where the plan has one, with CONN_MAX_AGE 0, a pool the
installed driver supports, and the middleware that answers its exhaustion with
a 503. A PostgreSQL database is one whose backend's vendor is PostgreSQL,
PostGIS's and other engines built on Django's included.
"""

from contextlib import closing
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from config.gunicorn.database.settings import POOL_ENGINE, postgresql_engine

PSYCOPG_POOL_DEFAULT_SIZE = 4  # psycopg_pool's min_size, and max_size when not given
HOW = "build the entry with pooled() from config/gunicorn/database/settings.py"
MIDDLEWARE = "config.gunicorn.database.middleware.DatabaseUnavailableMiddleware"


def pool_size(database):
    """Connections in each process's pool for this DATABASES entry; None without a pool."""
    if database.get("ENGINE") == POOL_ENGINE:
        return database["POOL"]["max_size"]
    pool = database.get("OPTIONS", {}).get("pool")
    if not pool:
        return None
    if pool is True:
        return PSYCOPG_POOL_DEFAULT_SIZE
    return pool.get("max_size") or pool.get("min_size", PSYCOPG_POOL_DEFAULT_SIZE)


def vendor(database):
    """The vendor of a DATABASES entry's backend ("postgresql", "sqlite", ...)."""
    from django.db.utils import load_backend

    engine = database.get("ENGINE", "")
    if engine == POOL_ENGINE:
        return "postgresql"  # it pools nothing else (pooled/base.py)
    try:
        return load_backend(engine).DatabaseWrapper.vendor
    except ImproperlyConfigured:  # not importable here: the app will say why when it loads
        return "postgresql" if postgresql_engine(engine) else None


def postgresql(databases):
    return {
        alias: database for alias, database in databases.items() if vendor(database) == "postgresql"
    }


def planned_pools(databases):
    """The pool size of each PostgreSQL database (None: no pool); None without PostgreSQL."""
    found = postgresql(databases)
    return [pool_size(database) for database in found.values()] if found else None


def database_problems(databases, plan, psycopg3, psycopg_pool):
    """What keeps `databases` (settings.DATABASES) from doing what `plan` says: one line each.

    `psycopg3`, `psycopg_pool`: whether each is installed (Django's pool needs both).
    """
    problems = []
    for alias, database in postgresql(databases).items():
        size = pool_size(database)
        age = database.get("CONN_MAX_AGE", 0)
        djangos_pool = database.get("OPTIONS", {}).get("pool")
        if djangos_pool and not psycopg3:
            problems.append(
                f"Database {alias!r}: Django's pool (OPTIONS['pool']) needs psycopg 3, and "
                f"this is psycopg2: {HOW}, which gives either driver a pool of its own"
            )
        elif djangos_pool and not psycopg_pool:
            problems.append(
                f"Database {alias!r}: Django's pool (OPTIONS['pool']) needs psycopg_pool, "
                f"which is not installed: pip install 'psycopg[pool]', or {HOW}"
            )
        elif plan.pool is None:
            continue  # a persistent connection per request slot fits the budget
        elif size is None:
            problems.append(
                f"Database {alias!r} has no pool (CONN_MAX_AGE={age}): the {plan.model} preset "
                f"plans {plan.describe()} (DATABASE_CONNECTION_BUDGET={plan.budget}), and "
                f"without a pool each request in flight could hold a connection: {HOW}"
            )
        elif size != plan.pool:
            problems.append(
                f"Database {alias!r} has a pool of {size} per worker where the {plan.model} "
                f"preset plans {plan.pool} (DATABASE_CONNECTION_BUDGET={plan.budget} over "
                f"{plan.workers} workers): {HOW}"
            )
        elif age != 0:
            problems.append(
                f"Database {alias!r} keeps connections (CONN_MAX_AGE={age}) with a pool: they "
                f"would never go back to it: {HOW}"
            )
    return problems


@dataclass(frozen=True)
class MiddlewareProblem:
    """The 503 middleware is missing: refused where a pool is planned, else a warning."""

    refused: bool
    message: str

    def __str__(self):
        return self.message


def answers_503(path):
    """Whether the MIDDLEWARE entry `path` is the kit's 503 middleware, or a subclass of it."""
    if path == MIDDLEWARE:
        return True
    try:
        return issubclass(import_string(path), import_string(MIDDLEWARE))
    except (ImportError, TypeError):
        return False  # Django names a middleware it cannot import when it loads it


def middleware_problem(middleware, databases, plan):
    """The MiddlewareProblem of `middleware` (settings.MIDDLEWARE), or None."""
    if not postgresql(databases) or any(answers_503(path) for path in middleware):
        return None
    if plan.pool is not None:
        return MiddlewareProblem(
            True,
            f"MIDDLEWARE has no {MIDDLEWARE}: the {plan.model} preset plans {plan.describe()}, "
            "and a request that waits out the pool would get a 500 with no Retry-After: add "
            f'MIDDLEWARE.insert(0, "{MIDDLEWARE}") after MIDDLEWARE in your settings',
        )
    return MiddlewareProblem(
        False,
        f"MIDDLEWARE has no {MIDDLEWARE}: a database that cannot be reached answers 500, "
        "not 503 with Retry-After",
    )


def connect_once(connection, timeout):
    """SELECT 1 on a connection of its own to `connection`'s database, closed at once.

    Never the pool's, and never kept: the master's checks and the readiness probe
    ask this way (the master forks its workers afterwards, which must not share a
    socket). `timeout` bounds the connection and the statement, in seconds.
    """
    params = connection.get_connection_params()
    params["connect_timeout"] = timeout
    params["options"] = f"{params.get('options', '')} -c statement_timeout={timeout}s".strip()
    # closing(): psycopg2's connection, used as a context manager, ends a transaction only.
    with closing(connection.Database.connect(**params)) as probe:
        probe.cursor().execute("SELECT 1")


def cannot_connect(alias, timeout):
    """Why the database `alias` cannot be reached, in one line, or None when it answers."""
    from django.db import connections

    from config.gunicorn.database.middleware import first_line

    try:
        connect_once(connections[alias], timeout)
    except Exception as exc:  # whatever it is, the service cannot use this database now
        return first_line(exc)
    return None
