"""A gevent worker that never blocks: what the master checks before forking any.

gevent runs all the requests of a worker on one thread and switches between
them only where code waits through gevent: patched sockets, locks and sleeps,
and database drivers that wait the same way. Anything else that waits stops
every request of the worker. The gevent preset patches the standard library
first thing in the master; its on_starting hook, once the app is loaded and
before any worker forks, checks the rest:

- socket, ssl, threading and select are gevent's (patch_all with any of them
  turned off is not enough);
- the database driver waits through gevent. psycopg2 waits inside libpq, in
  C, unless a wait callback is set: psycogreen's is installed here. psycopg 3
  detects the patch by itself since 3.1.14 (versions.py checks the version),
  when it is imported, which must be after the patch;
- two greenlets get two database connections. If django.db was imported before
  the patch (say, by settings that import a model), Django keeps connections in
  a thread-local, shared by every greenlet of a worker: concurrent queries on
  one connection.
- `async def` views run. Django runs one under WSGI through asgiref's
  async_to_sync, which starts an asyncio loop in a thread of its own; asyncio
  keeps its running loop per OS thread, and with gevent's threads (greenlets,
  all on the worker's one thread) a second such request while the first ran
  was a 500: "You cannot use AsyncToSync in the same thread as an async event
  loop". asgiref gets a pool of real threads instead, one per worker
  (ASYNC_VIEW_THREADS): each loop runs in one, while the request's greenlet
  waits cooperatively (20 requests to /demo/io-async at once: 20 answered,
  where 19 were 500s). At most ASYNC_VIEW_THREADS run at once in a worker;
  the asgi preset has no such bound (a task each, not a thread). Which serves
  them faster depends on the views: `nox -s loadtest` measures it (io-async).

Workers are forked from the master, so they inherit all of it, the wait
callback included. A failed check stops gunicorn with one line, and no worker
started, like the checks in startup.py. (Refused by each worker instead, the
same check fails in every worker at once, and gunicorn 27's master then dies
with a traceback of its own, exit status 1.)
"""

import os
import sys
from importlib.util import find_spec

from gevent import monkey

from config.gunicorn.base import SETTINGS_MODULE

PATCHED_MODULES = ("socket", "ssl", "threading", "select")


def on_starting(server):
    unpatched = [name for name in PATCHED_MODULES if not monkey.is_module_patched(name)]
    if unpatched:
        sys.exit(
            f"gevent: {', '.join(unpatched)} not monkey-patched: call "
            "gevent.monkey.patch_all() first thing in the preset, with no module turned off"
        )
    make_database_driver_cooperative()
    require_a_connection_per_greenlet()
    run_async_views_in_real_threads()


def make_database_driver_cooperative():
    """The driver Django will use waits through gevent: Django prefers psycopg 3 if installed."""
    try:
        import psycopg  # noqa: F401 - imported here, after the patch, as Django would
    except ImportError:
        pass
    else:
        require_cooperative_psycopg()
        return
    if find_spec("psycopg2") is None:
        return  # no PostgreSQL driver: nothing to make cooperative
    try:
        from psycogreen.gevent import patch_psycopg
    except ImportError:
        sys.exit("gevent: psycopg2 blocks the whole worker on every query without psycogreen")
    patch_psycopg()


def require_cooperative_psycopg():
    from psycopg import waiting

    if waiting.wait is getattr(waiting, "wait_c", None):
        sys.exit(
            "gevent: psycopg waits in C, blocking the whole worker on every query: it was "
            "imported before gevent's monkey-patching, or PSYCOPG_WAIT_FUNC=wait_c is set"
        )


def require_a_connection_per_greenlet():
    if "django.db" not in sys.modules:
        return  # the workers will import it, after the patch
    import gevent
    from django.db import DEFAULT_DB_ALIAS, connections

    # As wsgi.py does, for a master that has not loaded the app (preload_app off).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)

    def connection():
        return connections[DEFAULT_DB_ALIAS]  # a wrapper object: nothing connects yet

    if gevent.spawn(connection).get() is gevent.spawn(connection).get():
        sys.exit(
            "gevent: every greenlet would share one Django database connection: django.db "
            "was imported before gevent's monkey-patching, which must come first in the preset"
        )


def run_async_views_in_real_threads():
    """asgiref runs each async_to_sync loop in a pool of real threads, one per worker."""
    from asgiref import sync

    sync.ThreadPoolExecutor = real_threads  # asgiref's module name for the pool it starts


# asgiref starts a pool of one thread for each async view it runs, and never shuts it down:
# the standard library's pool ends its thread once the pool is garbage, gevent's does not.
# With a gevent pool of OS threads for each call, 100 clients on /demo/io-async left 8,200
# threads, 16,400 open files (each thread's own gevent hub) and 1.9 GB in a worker after
# 40 s. So every call gets the worker's one pool: at most ASYNC_VIEW_THREADS async views
# run at once in a worker, the others wait for a thread (cooperatively); idle threads stay.
ASYNC_VIEW_THREADS = 100
_real_threads = {}  # pid: the pool, made in the worker that first runs an async view


def real_threads(max_workers=None):
    """The worker's pool of OS threads, whatever size asgiref asks for (always 1)."""
    pool = _real_threads.get(os.getpid())
    if pool is None:
        from gevent.threadpool import ThreadPoolExecutor

        pool = _real_threads[os.getpid()] = ThreadPoolExecutor(ASYNC_VIEW_THREADS)
    return pool
