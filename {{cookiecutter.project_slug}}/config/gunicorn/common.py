"""What every gunicorn preset shares: production settings, start-up checks, the start-up line.

A preset imports the settings below by name (gunicorn reads a config file's
module-level names) and adds its worker model and sizing. gunicorn's own
command-line flags and GUNICORN_CMD_ARGS still win over any of them.

gunicorn imports this module in the master, before any worker forks. It stops
start-up with one line, and no worker started, when an environment variable is
out of range (see environment.py) or when the Django settings cannot load
(e.g. no DJANGO_SECRET_KEY in production): otherwise every worker would fail
to boot with a traceback of its own.

The master also plans the database connections once it knows the final number
of workers (`nworkers_changed`, below), and each preset's first worker logs
the warnings of the Django system checks tagged "gunicorn" (`post_worker_init`).

Upstream limit: gunicorn itself reads WEB_CONCURRENCY before it reads this
file, and a value that is not a number stops it with a traceback. `python -m
config.gunicorn` checks the environment first and prints one line instead.
"""

import os
import sys
from dataclasses import dataclass
from importlib import import_module

from django.core.exceptions import ImproperlyConfigured

from config.gunicorn.cpu import cpu_budget
from config.gunicorn.environment import BadSetting, read_environment

# What every preset takes as it is, by `from config.gunicorn.common import *`: gunicorn
# reads a config file's module-level names. A preset's own assignments come after it.
__all__ = [
    "access_log_format",
    "accesslog",
    "bind",
    "control_socket",
    "control_socket_disable",
    "forwarded_allow_ips",
    "graceful_timeout",
    "limit_request_field_size",
    "limit_request_fields",
    "limit_request_line",
    "max_requests",
    "max_requests_jitter",
    "nworkers_changed",
    "post_worker_init",
    "timeout",
    "worker_tmp_dir",
    "wsgi_app",
]

# The package that holds settings.py, wsgi.py and asgi.py. When copying
# config/gunicorn/ into another Django project, this is the line to change.
DJANGO_PROJECT = "config"


def check_django_settings():
    """Load the Django settings once, here, so that a bad value stops gunicorn with one line."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE", f"{DJANGO_PROJECT}.settings")
    try:
        import_module(module)
    except ImproperlyConfigured as exc:
        sys.exit(f"Configuration error: {exc}")
    except ModuleNotFoundError as exc:
        if exc.name is None or not f"{module}.".startswith(f"{exc.name}."):
            raise  # the settings module exists; something it imports does not
        sys.exit(
            f"Configuration error: no Django settings module {module!r}: set "
            "DJANGO_SETTINGS_MODULE, or DJANGO_PROJECT in config/gunicorn/common.py"
        )
    finally:
        sys.modules.pop(module, None)  # workers (and reloads) import it afresh


try:
    env = read_environment()
except BadSetting as exc:
    sys.exit(str(exc))
cpu = cpu_budget()
check_django_settings()


def size_workers(sized, formula):
    """Workers and where the number came from: WEB_CONCURRENCY, else `sized`, capped."""
    if env.workers is not None:
        return env.workers, "WEB_CONCURRENCY"
    if sized > env.max_workers:
        return env.max_workers, f"{formula} = {sized}, capped by GUNICORN_MAX_WORKERS"
    return sized, formula


# Worker classes that run many requests at once in a process with nothing else to bound
# them (greenlets; under ASGI, a thread per request): without a pool, each request in
# flight could hold a database connection of its own.
POOLED_WORKER_CLASSES = ("gevent", "asgi")


@dataclass(frozen=True)
class DatabasePlan:
    """The most PostgreSQL connections the workers can open, and the budget to fit in."""

    worker_class: str
    workers: int
    concurrency: int | None  # requests one worker runs at once; None: no limit
    pool: int | None  # connections in each worker's pool; None: no pool
    budget: int

    @property
    def most(self):
        per_worker = self.concurrency if self.pool is None else self.pool
        return None if per_worker is None else self.workers * per_worker

    def environ(self):
        """What workers inherit: the pool for the settings, the facts for the system checks."""
        exported = {
            "GUNICORN_WORKER_CLASS": self.worker_class,
            "GUNICORN_WORKERS": str(self.workers),
            "GUNICORN_WORKER_CONCURRENCY": str(self.concurrency or ""),
            "DATABASE_CONNECTION_BUDGET": str(self.budget),
        }
        if self.pool is not None:
            exported["DJANGO_DB_POOL_SIZE"] = str(self.pool)
        return exported

    def __str__(self):
        each = f"a pool of {self.pool} per worker" if self.pool else "a connection per thread"
        most = "no limit" if self.most is None else f"{self.most} at most"
        return f"database: {each}, {most}; budget {self.budget} (DATABASE_CONNECTION_BUDGET)"


def plan_database(cfg, workers, budget):
    """Pooled worker classes share the budget between workers. The others keep a
    connection per thread (CONN_MAX_AGE): the system checks compare that with the budget.
    """
    concurrency = {"sync": 1, "gthread": cfg.threads, "gevent": cfg.worker_connections}
    pool = None
    if cfg.worker_class_str in POOLED_WORKER_CLASSES:
        pool = budget // workers
        if pool < 1:
            raise BadSetting(
                f"DATABASE_CONNECTION_BUDGET={budget} gives less than one connection to each "
                f"of the {workers} workers: raise it or lower WEB_CONCURRENCY"
            )
    return DatabasePlan(
        cfg.worker_class_str, workers, concurrency.get(cfg.worker_class_str), pool, budget
    )


def nworkers_changed(server, workers, previous):
    """Plan the database connections whenever the number of workers is set.

    gunicorn calls this hook after applying the command line and before loading a
    preloaded app, so the settings see the plan in os.environ, in the master and in the
    workers forked from it. TTIN/TTOU call it again: workers forked after that get the
    new share; running ones keep theirs until they are replaced.
    """
    if previous is None and server.cfg.worker_class_str == "gevent":
        monkey = sys.modules["gevent.monkey"]  # gunicorn has imported the worker class
        if not monkey.is_module_patched("socket"):
            # -k gevent over another preset: Django would be imported unpatched, and its
            # connections shared by every greenlet of a worker.
            sys.exit(
                "The gevent worker needs the gevent preset, which monkey-patches first: "
                "GUNICORN_PRESET=gevent, or gunicorn -c config/gunicorn/gevent.py"
            )
    try:
        plan = plan_database(server.cfg, workers, env.database_connection_budget)
    except BadSetting as exc:
        if previous is None:
            sys.exit(str(exc))
        server.log.error("%s; workers forked from now on keep the previous pool", exc)
        return
    os.environ.update(plan.environ())
    if previous is not None:
        server.log.info("%s workers: %s", workers, plan)


def post_worker_init(worker):
    """Log what the Django system checks tagged "gunicorn" find, from the first worker only.

    They are this project's checks of database connections (the app's checks.py): run
    in a worker, they see the settings and the driver as requests will.
    """
    if worker.age != 1:
        return
    from django.core import checks  # here: the master needs none of Django's checks

    for message in checks.run_checks(tags=["gunicorn"]):
        log = worker.log.error if message.is_serious() else worker.log.warning
        log("%s: %s %s", message.id, message.msg, message.hint or "")


def log_startup(preset, workers, workers_from):
    """A when_ready hook: the master logs the effective configuration on one line."""

    def when_ready(server):
        cfg = server.cfg
        # Command-line flags and GUNICORN_CMD_ARGS are applied after the preset.
        source = workers_from if cfg.workers == workers else "gunicorn option"
        each = []
        if cfg.worker_class_str == "gthread":
            each.append(f"{cfg.threads} threads")
        if cfg.worker_class_str in ("gthread", "gevent"):
            each.append(f"{cfg.worker_connections} connections")
        workers_line = f"{cfg.workers} workers ({source})"
        if each:
            workers_line += f", {' and '.join(each)} each"
        # The sync worker closes every connection, whatever keepalive says.
        keepalive_on = cfg.keepalive and cfg.worker_class_str != "sync"
        keepalive = f"{cfg.keepalive} s" if keepalive_on else "off"
        server.log.info(
            "Preset %s: %s; keep-alive %s; timeout %s s; CPU budget %s; %s",
            preset,
            workers_line,
            keepalive,
            cfg.timeout,
            cpu,
            plan_database(cfg, cfg.workers, env.database_connection_budget),
        )

    return when_ready


wsgi_app = f"{DJANGO_PROJECT}.wsgi:application"
bind = [f"0.0.0.0:{env.port}"]

# A worker that has not reported to the master for this long is killed. A sync
# worker reports between requests, so this is the longest a request may run.
# gthread, gevent and asgi workers report while requests wait: for them it only
# catches a stuck main thread or event loop (see each preset).
timeout = env.timeout

# On SIGTERM, requests in flight get this long to finish: less than the 30 s that
# Kubernetes, ECS and Heroku wait before SIGKILL. (docker stop waits 10 s: give
# the container a longer stop_grace_period.)
graceful_timeout = 25

# Replace a worker after 10,000 requests, give or take 1,000 so that workers do
# not restart together: caps slow memory growth (leaks, fragmentation). A new
# worker forks in milliseconds from the master, where every preset has imported
# Django already (preload_app).
max_requests = 10_000
max_requests_jitter = 1_000

# Each worker touches a heartbeat file every second; on a container's overlay
# filesystem that can stall long enough to get healthy workers killed. /dev/shm
# is in memory.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# X-Forwarded-Proto (hence request.is_secure()) and X-Forwarded-For are believed
# only from these addresses: the load balancer's, never anyone's by default.
forwarded_allow_ips = env.forwarded_allow_ips

# Bounds on what one request can make a worker parse (gunicorn's defaults, kept
# on purpose): a longer request line gets 414, a long query belongs in a POST
# body; 100 header fields of up to 8 KB fit real browsers, cookies and tokens.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# Access log on stdout, for the container runtime to collect: the combined log
# format plus the time the request took, in milliseconds.
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'

# gunicorn 27's control socket (for `gunicornc`) is off unless
# GUNICORN_CONTROL_SOCKET names a path. Its default, $HOME/.gunicorn/gunicorn.ctl,
# is one path for every instance on the host (the last one started takes it over,
# the first one to stop deletes it), and fails under a read-only or missing home.
control_socket = env.control_socket
control_socket_disable = env.control_socket is None
