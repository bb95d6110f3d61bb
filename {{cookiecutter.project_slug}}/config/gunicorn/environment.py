"""The environment variables that size and place the gunicorn presets, checked.

    PORT                         listen on 0.0.0.0:PORT; 1 to 65535, default 8000
    WEB_CONCURRENCY              workers, instead of the preset's sizing from the CPU
                                 budget; 1 to GUNICORN_MAX_WORKERS
    GUNICORN_MAX_WORKERS         cap on workers, sized or set; 1 to 256, default 16
    GUNICORN_THREADS             threads per gthread worker; 1 to 64
    GUNICORN_WORKER_CONNECTIONS  connections per gthread or gevent worker; 1 to 10000
    GUNICORN_TIMEOUT             seconds before a silent worker is killed; 1 to 3600,
                                 default 30 (what "silent" means depends on the preset)
    FORWARDED_ALLOW_IPS          proxies trusted for X-Forwarded-Proto/-For: IPs or
                                 networks, comma-separated, or * for any; default
                                 127.0.0.1,::1
    GUNICORN_CONTROL_SOCKET      path of the control socket for `gunicornc`; default none
    DATABASE_CONNECTION_BUDGET   PostgreSQL connections all workers together may open
                                 to each database; 1 to 10000, default 40 (see
                                 database/plan.py)
    GUNICORN_MAX_REQUEST_BODY    bytes a request may declare as its Content-Length;
                                 larger ones get a 413 before the body is read
                                 (workers/limits.py); default 10485760 (10 MiB)
    GUNICORN_ALLOW_DEBUG         true to serve with DJANGO_DEBUG=true on an address
                                 other hosts can reach (refused otherwise)
    GUNICORN_RECYCLE_GROWTH_MIB  MiB a worker may grow past its size after warm-up
                                 before it is replaced (workers/recycle.py); 0 never
                                 replaces one; default 256
    GUNICORN_RECYCLE_INTERVAL    seconds at least between two workers replaced for
                                 their memory; 1 to 86400, default 60

Read by the Django settings (database/settings.py), not by gunicorn:

    DJANGO_DB_POOL_TIMEOUT       seconds a request waits for a pooled connection
                                 before its 503; above 0, default 10
    DJANGO_DB_TRANSACTION_POOLING  true behind PgBouncer in transaction mode

Unset or empty means the default. Any other value outside its range stops
start-up with one line that names the variable, the value and what is allowed.
This module only reads: it is shared by the presets, by `python -m
config.gunicorn`, which checks the environment before gunicorn starts, and by
the settings.
"""

import ipaddress
import os
from dataclasses import dataclass

DEFAULT_PORT = 8000
DEFAULT_MAX_WORKERS = 16  # about 1 GB of Django processes; raise it on purpose, not by accident
DEFAULT_TIMEOUT = 30
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"  # a proxy on this host only; never * by default
# PostgreSQL allows 100 connections by default (max_connections), 3 of them kept for
# superusers. A rolling deploy runs the old and the new instance side by side: 2 x 40 = 80,
# which leaves room for migrations, cron jobs and an admin's psql.
DEFAULT_DATABASE_CONNECTION_BUDGET = 40
# As deploy/nginx/'s client_max_body_size: uploads of a few MB, never a disk-filling body.
DEFAULT_MAX_REQUEST_BODY = 10 * 1024 * 1024
# See workers/recycle.py for what they were measured against.
DEFAULT_RECYCLE_GROWTH_MIB = 256
DEFAULT_RECYCLE_INTERVAL = 60


class BadSetting(ValueError):
    """An environment variable gunicorn must not start with; str() is the one-line message."""


@dataclass(frozen=True)
class Environment:
    port: int
    max_workers: int
    timeout: int
    workers: int | None  # None: the preset sizes it
    threads: int | None
    worker_connections: int | None
    forwarded_allow_ips: str
    control_socket: str | None
    database_connection_budget: int
    max_request_body: int
    allow_debug: bool
    recycle_growth_mib: int  # 0: never replace a worker for its memory
    recycle_interval: int


def whole_number(environ, name, low, high, default=None, limit_from=None):
    """`environ[name]` as an int from `low` to `high`, or `default` when unset or empty."""
    raw = environ.get(name, "")
    if not raw.strip():
        return default
    allowed = f"use {low} to {high}" + (f" ({limit_from})" if limit_from else "")
    try:
        value = int(raw)
    except ValueError:
        raise BadSetting(f"{name}={raw!r} is not a whole number: {allowed}") from None
    if not low <= value <= high:
        raise BadSetting(f"{name}={raw!r} is out of range: {allowed}")
    return value


def positive_number(environ, name, default):
    """`environ[name]` as a number above 0 (seconds, say), or `default` when unset or empty."""
    raw = environ.get(name, "")
    if not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise BadSetting(f"{name}={raw!r} is not a number above 0: use e.g. {default:g}")
    return value


def boolean(environ, name, default=False):
    """`environ[name]` as true or false (also 1/0, yes/no, on/off), or `default`."""
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes", "on"):
        return True
    if raw in ("false", "0", "no", "off"):
        return False
    raise BadSetting(f"{name}={environ[name]!r} is not true or false")


def ip_networks(environ, name, default):
    """`environ[name]` as comma-separated IP addresses or networks (or *), else `default`."""
    raw = environ.get(name, "")
    if not raw.strip():
        return default
    try:
        for item in (item.strip() for item in raw.split(",")):
            if item and item != "*":
                ipaddress.ip_network(item)
    except ValueError:
        raise BadSetting(
            f"{name}={raw!r} is not a list of IP addresses or networks: "
            "use e.g. 10.0.0.0/8,127.0.0.1, or * to trust any client"
        ) from None
    return raw


def read_environment(environ=os.environ):
    """Every variable above, checked; raises BadSetting for the first bad one."""
    max_workers = whole_number(environ, "GUNICORN_MAX_WORKERS", 1, 256, DEFAULT_MAX_WORKERS)
    return Environment(
        port=whole_number(environ, "PORT", 1, 65535, DEFAULT_PORT),
        max_workers=max_workers,
        timeout=whole_number(environ, "GUNICORN_TIMEOUT", 1, 3600, DEFAULT_TIMEOUT),
        workers=whole_number(
            environ, "WEB_CONCURRENCY", 1, max_workers, limit_from="GUNICORN_MAX_WORKERS"
        ),
        threads=whole_number(environ, "GUNICORN_THREADS", 1, 64),
        worker_connections=whole_number(environ, "GUNICORN_WORKER_CONNECTIONS", 1, 10_000),
        forwarded_allow_ips=ip_networks(
            environ, "FORWARDED_ALLOW_IPS", DEFAULT_FORWARDED_ALLOW_IPS
        ),
        control_socket=environ.get("GUNICORN_CONTROL_SOCKET", "").strip() or None,
        database_connection_budget=whole_number(
            environ, "DATABASE_CONNECTION_BUDGET", 1, 10_000, DEFAULT_DATABASE_CONNECTION_BUDGET
        ),
        max_request_body=whole_number(
            environ, "GUNICORN_MAX_REQUEST_BODY", 0, 2**40, DEFAULT_MAX_REQUEST_BODY
        ),
        allow_debug=boolean(environ, "GUNICORN_ALLOW_DEBUG"),
        recycle_growth_mib=whole_number(
            environ, "GUNICORN_RECYCLE_GROWTH_MIB", 0, 1024**2, DEFAULT_RECYCLE_GROWTH_MIB
        ),
        recycle_interval=whole_number(
            environ, "GUNICORN_RECYCLE_INTERVAL", 1, 86_400, DEFAULT_RECYCLE_INTERVAL
        ),
    )
