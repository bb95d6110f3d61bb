"""System checks of the PostgreSQL connections the gunicorn workers can open.

Registered with the tag "gunicorn" (apps.py): `manage.py check` (and migrate)
runs them, and so does the first worker of every preset at start-up, which
logs their warnings (config/gunicorn/common.py).

In a worker they read what the gunicorn master exported when it planned the
connections: GUNICORN_WORKER_CLASS, GUNICORN_WORKERS, GUNICORN_WORKER_CONCURRENCY
(requests one worker runs at once; empty: no limit) and DATABASE_CONNECTION_BUDGET.
Outside gunicorn only the worker model is known, from GUNICORN_PRESET or the
project's default preset: the number of workers follows the CPUs of the
machine that runs gunicorn, and its master sets the pool, so the checks that
need them wait for start-up.
"""

import os
{%- if cookiecutter.database_driver == "psycopg2" %}
import sys
{%- endif %}
from dataclasses import dataclass
{%- if cookiecutter.database_driver == "psycopg2" %}
from importlib.util import find_spec
{%- endif %}

from django.core import checks
from django.db import connections

from config.gunicorn.__main__ import DEFAULT_PRESET


@dataclass(frozen=True)
class Server:
    """The gunicorn workers the checks are about; outside gunicorn, the worker class only."""

    worker_class: str
    workers: int | None = None
    concurrency: int | None = None  # requests one worker runs at once; None: no limit
    budget: int | None = None

    @classmethod
    def from_environ(cls, environ):
        if "GUNICORN_WORKERS" not in environ:
            return cls(environ.get("GUNICORN_PRESET", "").strip() or DEFAULT_PRESET)
        concurrency = environ["GUNICORN_WORKER_CONCURRENCY"]
        return cls(
            worker_class=environ["GUNICORN_WORKER_CLASS"],
            workers=int(environ["GUNICORN_WORKERS"]),
            concurrency=int(concurrency) if concurrency else None,
            budget=int(environ["DATABASE_CONNECTION_BUDGET"]),
        )


def postgresql_databases():
    """{alias: settings} of the databases on PostgreSQL, Django's defaults filled in."""
    return {
        connection.alias: connection.settings_dict
        for connection in connections.all()
        if connection.vendor == "postgresql"
    }


def pool_size(database):
    """The most connections one process opens to `database`, if a pool bounds them."""
{%- if cookiecutter.database_driver == "psycopg" %}
    pool = database["OPTIONS"].get("pool")
    if not pool:
        return None
    if pool is True:
        return 4  # psycopg_pool's default: min_size 4, and max_size the same
    return pool.get("max_size") or pool.get("min_size", 4)
{%- else %}
    pool = database.get("POOL")
    return pool["max_size"] if pool else None
{%- endif %}


def database_connections(app_configs=None, **kwargs):
    return connection_warnings(postgresql_databases(), Server.from_environ(os.environ))


def connection_warnings(databases, server):
    """Persistent connections under gevent, and connections beyond the budget."""
    if server.workers is None or not databases:
        return []
    warnings = []
    per_worker = []
    for alias, database in databases.items():
        size = pool_size(database)
        if size is None and server.worker_class == "gevent" and database["CONN_MAX_AGE"] != 0:
            warnings.append(
                checks.Warning(
                    f"Database {alias!r}: persistent connections (CONN_MAX_AGE="
                    f"{database['CONN_MAX_AGE']}) and no pool under gevent: each greenlet "
                    "keeps a connection of its own, never reused, until PostgreSQL has no more.",
                    hint="Give it a pool and CONN_MAX_AGE = 0, as config/settings.py does "
                    "when the gunicorn master sets DJANGO_DB_POOL_SIZE.",
                    id="{{ cookiecutter.project_slug }}.W002",
                )
            )
        per_worker.append(size or server.concurrency)
    if None in per_worker:
        warnings.append(
            checks.Warning(
                f"No limit on PostgreSQL connections: {server.worker_class} workers run any "
                "number of requests at once, each with a connection of its own, and "
                f"DATABASE_CONNECTION_BUDGET is {server.budget}.",
                hint="Give the databases a pool: config/settings.py does when the gunicorn "
                "master sets DJANGO_DB_POOL_SIZE (the gevent and asgi presets).",
                id="{{ cookiecutter.project_slug }}.W003",
            )
        )
    elif server.workers * sum(per_worker) > server.budget:
        warnings.append(
            checks.Warning(
                f"Up to {server.workers * sum(per_worker)} PostgreSQL connections "
                f"({server.workers} workers x {sum(per_worker)}) exceed "
                f"DATABASE_CONNECTION_BUDGET={server.budget}.",
                hint="Lower WEB_CONCURRENCY or GUNICORN_THREADS, or raise the budget if "
                "PostgreSQL's max_connections has room for it in every instance at once.",
                id="{{ cookiecutter.project_slug }}.W003",
            )
        )
    return warnings
{%- if cookiecutter.database_driver == "psycopg2" %}


def psycopg2_wait_callback(app_configs=None, **kwargs):
    server = Server.from_environ(os.environ)
    if server.worker_class != "gevent" or not postgresql_databases():
        return []
    if not psycopg2_blocks_gevent():
        return []
    return [
        checks.Warning(
            "gevent workers with psycopg2 and no wait callback: every query blocks the "
            "whole worker, all its requests with it.",
            hint="Run the gevent preset, which installs psycogreen's wait callback in each "
            "worker (config/gunicorn/cooperative.py); psycogreen must be installed.",
            id="{{ cookiecutter.project_slug }}.W001",
        )
    ]


def psycopg2_blocks_gevent():
    """Django's driver is psycopg2 and nothing makes it wait through gevent."""
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if is_psycopg3:  # Django prefers psycopg 3 when it is installed
        return False
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):  # in a gevent worker
        from psycopg2 import extensions

        return extensions.get_wait_callback() is None
    return find_spec("psycogreen") is None
{%- endif %}
