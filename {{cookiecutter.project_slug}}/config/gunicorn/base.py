"""What every gunicorn preset shares: production settings, and the hooks that keep them honest.

A preset imports the settings below by name (gunicorn reads a config file's
module-level names), then adds its worker model and its sizing (sizing.py).
gunicorn's own command-line flags and GUNICORN_CMD_ARGS still win over any of
them.

gunicorn imports this module in the master, before any worker forks: an
environment variable out of range (environment.py) stops start-up here, with one
line and no worker started. The hooks plan the database connections, then load
the Django settings and check them against the plan (startup.py): settings
that do not load stop start-up there, also in one line and before any worker.

Upstream limit: gunicorn itself reads WEB_CONCURRENCY before it reads this
file, and a value that is not a number stops it with a traceback. `python -m
config.gunicorn` checks the environment first and prints one line instead.
"""

import os
import sys
from importlib.util import find_spec
from pathlib import Path

from config.gunicorn import openfiles, sizing, startup
from config.gunicorn.accesslog import KIT_FORMAT
from config.gunicorn.cpu import cpu_budget
from config.gunicorn.environment import BadSetting, read_environment
from config.gunicorn.observability import hooks as observability

# What every preset takes as it is, by `from config.gunicorn.base import *`: gunicorn
# reads a config file's module-level names. A preset's own assignments come after it.
__all__ = [
    "access_log_format",
    "accesslog",
    "bind",
    "child_exit",
    "control_socket",
    "control_socket_disable",
    "forwarded_allow_ips",
    "forwarder_headers",
    "graceful_timeout",
    "limit_request_field_size",
    "limit_request_fields",
    "limit_request_line",
    "logger_class",
    "nworkers_changed",
    "on_exit",
    "post_fork",
    "post_worker_init",
    "pre_fork",
    "timeout",
    "worker_abort",
    "worker_exit",
    "worker_tmp_dir",
    "wsgi_app",
]


def django_project(settings_module):
    """The package that holds wsgi.py and asgi.py: the one nearest the settings module.

    config.settings: config. A settings package (mysite.settings.production) is not it:
    mysite is. Only files are looked at: nothing is imported, so nothing is read from the
    settings before the master has exported its plan.
    """
    packages = settings_module.split(".")[:-1]
    spec = find_spec(packages[0]) if packages else None
    if spec is None or not spec.submodule_search_locations:
        return ".".join(packages) or settings_module
    directory, nearest = Path(spec.submodule_search_locations[0]), packages[0]
    for depth, package in enumerate(packages):
        if depth:
            directory /= package
        if (directory / "wsgi.py").is_file():
            nearest = ".".join(packages[: depth + 1])
    return nearest


# The Django project: its settings module, and the package that holds wsgi.py and asgi.py
# (config.settings: config.wsgi, config.asgi).
SETTINGS_MODULE = os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
DJANGO_PROJECT = django_project(SETTINGS_MODULE)

try:
    env = read_environment()
except BadSetting as exc:
    sys.exit(str(exc))
cpu = cpu_budget()


def size(model):
    """The preset's sizing on this machine's CPU budget and environment."""
    startup.require_versions(model)
    return sizing.size(model, cpu.cpus, env)


def nworkers_changed(server, workers, previous):
    """Plan the database connections whenever the number of workers is set."""
    if previous is None:
        openfiles.lift_soft_limit()  # before any worker forks: they inherit it
    if previous is None and startup.worker_model(server.cfg) == "gevent":
        monkey = sys.modules["gevent.monkey"]  # gunicorn has imported the worker class
        if not monkey.is_module_patched("socket"):
            # -k gevent over another preset: Django would be imported unpatched, and its
            # connections shared by every greenlet of a worker.
            sys.exit(
                "The gevent worker needs the gevent preset, which monkey-patches first: "
                "GUNICORN_PRESET=gevent, or gunicorn -c config/gunicorn/gevent.py"
            )
    startup.plan_connections(server, workers, previous, env.database_connection_budget)
    if previous is None:
        observability.prepare(server)  # metrics directory: before the app is preloaded


def log_startup(preset, sized):
    """A when_ready hook: check the settings against the plan, then log the configuration."""

    def when_ready(server):
        startup.verify_and_log(
            server, preset, sized, cpu, env.database_connection_budget, env.allow_debug
        )
        observability.when_ready(server)  # the metrics and liveness server

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

# No max_requests: a worker is replaced when its memory has grown, one at a time
# (GUNICORN_RECYCLE_GROWTH_MIB, GUNICORN_RECYCLE_INTERVAL: workers/recycle.py, where
# the measured cost of a count is). A new worker forks in milliseconds from the
# master, where every preset has imported Django already (preload_app).

# Each worker touches a heartbeat file every second; on a container's overlay
# filesystem that can stall long enough to get healthy workers killed. /dev/shm
# is in memory.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# X-Forwarded-Proto (hence request.is_secure()) and X-Forwarded-For are believed
# only from these addresses: the load balancer's, never anyone's by default.
forwarded_allow_ips = env.forwarded_allow_ips
# gunicorn also takes SCRIPT_NAME and PATH_INFO headers from them by default: a
# client on 127.0.0.1 sent `SCRIPT_NAME: /evilprefix` and every redirect went to
# /evilprefix/... (a mismatched one was a 500). No proxy of the kit sets them.
forwarder_headers = ""

# Bounds on what one request can make a worker parse (gunicorn's defaults, kept
# on purpose): a longer request line gets 414, a long query belongs in a POST
# body; 100 header fields of up to 8 KB fit real browsers, cookies and tokens.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# Access log on stdout, for the container runtime to collect: the combined log
# format plus the time the request took, in milliseconds, and the request ID;
# formatted for 0.5 us a request, where gunicorn's own logger takes 42
# (accesslog.py, which says what the line costs in all). LOG_FORMAT=json makes it
# a JSON object instead; `accesslog = None` leaves it to the proxy in front.
accesslog = "-"
access_log_format = KIT_FORMAT
logger_class = "config.gunicorn.accesslog.AccessLogger"

# gunicorn 27's control socket (for `gunicornc`) is off unless
# GUNICORN_CONTROL_SOCKET names a path. Its default, $HOME/.gunicorn/gunicorn.ctl,
# is one path for every instance on the host (the last one started takes it over,
# the first one to stop deletes it), and fails under a read-only or missing home.
control_socket = env.control_socket
control_socket_disable = env.control_socket is None

# Metrics, liveness, request IDs, error reporting, tracing: observability/hooks.py.
pre_fork = observability.pre_fork
post_fork = observability.post_fork
post_worker_init = observability.post_worker_init
worker_abort = observability.worker_abort
worker_exit = observability.worker_exit
child_exit = observability.child_exit
on_exit = observability.on_exit
