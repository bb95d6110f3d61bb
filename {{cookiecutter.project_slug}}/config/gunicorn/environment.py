"""The environment variables that size and place the gunicorn presets, checked.

    PORT                         listen on 0.0.0.0:PORT; 1 to 65535, default 8000
    WEB_CONCURRENCY              workers, instead of the preset's sizing from the CPU
                                 budget; 1 or more, capped by GUNICORN_MAX_WORKERS
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
    GUNICORN_ALLOW_DEBUG         true to serve with settings.DEBUG on an address other
                                 hosts can reach (refused otherwise)
    GUNICORN_RECYCLE_GROWTH_MIB  MiB a worker may grow past its size after warm-up
                                 before it is replaced (workers/recycle.py); 0 never
                                 replaces one; default 256
    GUNICORN_RECYCLE_INTERVAL    seconds at least between two workers replaced for
                                 their memory; 1 to 86400, default 60

Read by the Django settings (database/settings.py), not by gunicorn:

    DJANGO_DB_POOL_TIMEOUT       seconds a request waits for a pooled connection
                                 before its 503; above 0, default 10
    DJANGO_DB_STATEMENT_TIMEOUT  seconds a query may run before PostgreSQL cancels it;
                                 0 for no limit; default 20 under the presets, none
                                 elsewhere (manage.py migrate, shell)
    DJANGO_DB_TRANSACTION_POOLING  true behind PgBouncer in transaction mode

WEB_CONCURRENCY is a platform's to set (Heroku sets 17 on its largest dynos):
above GUNICORN_MAX_WORKERS it is capped, and the start-up line says so, rather
than stopping a boot the operator never asked for.

One set of rules for every variable, the Django settings' included: true and
false are what environs (marshmallow) reads as booleans (true/false, t/f,
yes/no, y/n, on/off, 1/0), numbers are what it reads as numbers. Unset or
empty means the default. Any other value outside its range stops start-up with
one line that names the variable, the value and what is allowed. Values given
to gunicorn itself (`--workers`, `--threads`, ... on the command line or in
GUNICORN_CMD_ARGS) go through the same ranges (check_options()).

This module only reads: it is shared by the presets, by `python -m
config.gunicorn`, which checks the environment before gunicorn starts, and by
the settings.
"""

import ipaddress
import os
from dataclasses import dataclass

from marshmallow import ValidationError, fields

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

# The ranges, by variable; gunicorn's own options are held to the same (check_options()).
MAX_WORKERS_RANGE = (1, 256)
THREADS_RANGE = (1, 64)
WORKER_CONNECTIONS_RANGE = (1, 10_000)
TIMEOUT_RANGE = (1, 3600)
OPTIONS = {  # gunicorn setting: (command-line flag, variable, range)
    "threads": ("--threads", "GUNICORN_THREADS", THREADS_RANGE),
    "worker_connections": (
        "--worker-connections",
        "GUNICORN_WORKER_CONNECTIONS",
        WORKER_CONNECTIONS_RANGE,
    ),
    "timeout": ("--timeout", "GUNICORN_TIMEOUT", TIMEOUT_RANGE),
}
# The settings each worker model uses, of those above (and workers, for all).
MODEL_OPTIONS = {
    "sync": ("timeout",),
    "gthread": ("threads", "worker_connections", "timeout"),
    "gevent": ("worker_connections", "timeout"),
    "asgi": ("timeout",),
}
BOOLEAN = fields.Boolean()  # environs' env.bool: the same truthy and falsy spellings
INTEGER = fields.Integer()  # environs' env.int
NUMBER = fields.Float(allow_nan=False)  # environs' env.float, without nan


class BadSetting(ValueError):
    """An environment variable gunicorn must not start with; str() is the one-line message."""


@dataclass(frozen=True)
class Environment:
    port: int
    max_workers: int
    timeout: int
    workers: int | None  # WEB_CONCURRENCY as set (the preset caps it); None: the preset sizes it
    threads: int | None
    worker_connections: int | None
    forwarded_allow_ips: str
    control_socket: str | None
    database_connection_budget: int
    max_request_body: int
    allow_debug: bool
    recycle_growth_mib: int  # 0: never replace a worker for its memory
    recycle_interval: int


def raw_value(environ, name):
    """`environ[name]`, or None when unset or empty: the default applies."""
    raw = environ.get(name, "")
    return raw if raw.strip() else None


def parse(field, raw):
    """`raw` through a marshmallow field, as environs would read it; None if it cannot."""
    try:
        return field.deserialize(raw.strip())
    except ValidationError:
        return None


def in_range(name, value, low, high, limit_from=None):
    """`value` if from `low` to `high` (None: no upper bound); else BadSetting naming `name`."""
    if low <= value and (high is None or value <= high):
        return value
    allowed = f"{low} or more" if high is None else f"{low} to {high}"
    if limit_from:
        allowed += f" ({limit_from})"
    raise BadSetting(f"{name} is out of range: use {allowed}")


def whole_number(environ, name, low, high, default=None, limit_from=None):
    """`environ[name]` as an int from `low` to `high` (None: no bound), or `default`."""
    raw = raw_value(environ, name)
    if raw is None:
        return default
    value = parse(INTEGER, raw)
    if value is None:
        allowed = f"{low} or more" if high is None else f"{low} to {high}"
        raise BadSetting(f"{name}={raw!r} is not a whole number: use {allowed}")
    return in_range(f"{name}={raw!r}", value, low, high, limit_from)


def positive_number(environ, name, default, allow_zero=False):
    """`environ[name]` as a number above 0 (or 0 with `allow_zero`), or `default`."""
    raw = raw_value(environ, name)
    if raw is None:
        return default
    value = parse(NUMBER, raw)
    if value is None or not (value > 0 or (allow_zero and value == 0)):
        floor = "0 or more" if allow_zero else "a number above 0"
        raise BadSetting(f"{name}={raw!r} is not {floor}: use e.g. {default:g}")
    return value


def boolean(environ, name, default=False):
    """`environ[name]` as true or false, spelled as environs reads it, or `default`."""
    raw = raw_value(environ, name)
    if raw is None:
        return default
    value = parse(BOOLEAN, raw)
    if value is None:
        raise BadSetting(
            f"{name}={raw!r} is not true or false: use true or false (also yes/no, on/off, 1/0)"
        )
    return value


def ip_networks(environ, name, default):
    """`environ[name]` as comma-separated IP addresses or networks (or *), else `default`."""
    raw = raw_value(environ, name)
    if raw is None:
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
    return Environment(
        port=whole_number(environ, "PORT", 1, 65535, DEFAULT_PORT),
        max_workers=whole_number(
            environ, "GUNICORN_MAX_WORKERS", *MAX_WORKERS_RANGE, DEFAULT_MAX_WORKERS
        ),
        timeout=whole_number(environ, "GUNICORN_TIMEOUT", *TIMEOUT_RANGE, DEFAULT_TIMEOUT),
        workers=whole_number(environ, "WEB_CONCURRENCY", 1, None),
        threads=whole_number(environ, "GUNICORN_THREADS", *THREADS_RANGE),
        worker_connections=whole_number(
            environ, "GUNICORN_WORKER_CONNECTIONS", *WORKER_CONNECTIONS_RANGE
        ),
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


def check_options(cfg, model, max_workers):
    """gunicorn's final settings `cfg` held to the ranges of their variables, for `model`.

    The command line and GUNICORN_CMD_ARGS set them after the preset: `--workers 0`
    would serve nothing (sync, gthread) or divide by zero (gevent, asgi).
    Raises BadSetting for the first one out of range.
    """
    where = "(command line or GUNICORN_CMD_ARGS)"
    in_range(
        f"gunicorn's --workers {cfg.workers} {where}",
        cfg.workers,
        1,
        max_workers,
        "GUNICORN_MAX_WORKERS",
    )
    for setting in MODEL_OPTIONS.get(model, ()):
        flag, variable, (low, high) = OPTIONS[setting]
        value = getattr(cfg, setting)
        in_range(f"gunicorn's {flag} {value} {where}", value, low, high, f"as {variable}")
