"""gthread: a few processes with a pool of threads each; the usual choice for Django.

For: views that mostly wait, on the database or on other services, which is what
most Django views do. A thread waiting on I/O releases the GIL, so one process
serves several requests at once; processes add CPU parallelism.

Sizing: CPUs + 1 workers x 8 threads (GUNICORN_THREADS). One process per CPU is
enough to use every CPU, since threads, not extra processes, cover the waiting;
the +1 covers a worker that is being replaced or busy computing.
8 threads keep one CPU busy while requests spend about 7/8 of their time
waiting; more threads per process only queue on the GIL.

Cost: 2 CPUs: 3 processes (50 to 60 MB each here), 24 requests at a time, and up
to 24 database connections (one per thread, kept CONN_MAX_AGE seconds). Where
workers x threads would exceed DATABASE_CONNECTION_BUDGET (40: from 5 CPUs on),
each worker shares a pool of budget / workers between its threads instead
(database/plan.py): 16 workers, 200 clients on /demo/db?ms=50 opened 32
connections, with no error. Measured on 2 CPUs, 100 clients on /demo/io?ms=50:
454 requests/s of the 469 bound.

Keep-alive, measured here with gunicorn 27.0.1 (2 CPUs, wrk with 100
keep-alive clients): gunicorn's gthread worker accepts connections up to
worker_connections whether or not it has a free thread, and keep-alive pins
each connection to its worker, so one worker held most clients while the
others idled (5 workers: one held 66 to 92 of 100; /demo/io?ms=50, 300 to 600
requests/s of a 780 bound). This preset used to turn keep-alive off, which
spread them but cost a TCP handshake per request: 2,859 requests/s on
/healthz where stock gunicorn (`-k gthread -w 3 --threads 8`) served 6,797.
Its worker now accepts a new connection only while one of its threads is idle
(workers/gthread.py), so clients spread evenly and keep their connections:
/demo/io?ms=50 at 447 requests/s (p99 237 ms) against stock's 373 (p99 456
ms), and /healthz at stock's rate. Keep-alive is 75 s, as for gevent and asgi
(see gevent.py).

Other traps:
- `timeout` does not bound a request: the worker's main thread keeps reporting
  while a request hangs in a thread. Give every database query and outgoing call
  its own timeout.
- Code that is not thread-safe (module-level state, some C libraries): use sync.

Slow queries: no timeout here ends one (see above); PostgreSQL cancels it after
DJANGO_DB_STATEMENT_TIMEOUT (20 s by default under the presets), and the request
gets a 500 that error reporting sees (database/settings.py).
"""

from config.gunicorn import base, workers
from config.gunicorn.base import *  # noqa: F403 - shared settings, hooks: base.__all__

worker_class = workers.CLASSES["gthread"]  # gunicorn's, guarded: see workers/
sized = base.size("gthread")
workers = sized.workers
threads = sized.threads
worker_connections = sized.worker_connections
keepalive = 75
# As in sync.py: fork from a master that has imported Django already.
preload_app = True
when_ready = base.log_startup("gthread", sized)
