"""gthread: a few processes with a pool of threads each; the usual choice for Django.

For: views that mostly wait, on the database or on other services, which is what
most Django views do. A thread waiting on I/O releases the GIL, so one process
serves several requests at once; processes add CPU parallelism.

Sizing: CPUs + 1 workers x 8 threads (GUNICORN_THREADS). One process per CPU is
enough to use every CPU, since threads, not extra processes, cover the waiting;
the +1 covers a worker that is restarting (max_requests) or busy computing.
8 threads keep one CPU busy while requests spend about 7/8 of their time
waiting; more threads per process only queue on the GIL.

Cost: 2 CPUs: 3 processes (50 to 60 MB each here), 24 requests at a time, and up
to 24 database connections (one per thread, kept CONN_MAX_AGE seconds). Where
workers x threads would exceed DATABASE_CONNECTION_BUDGET (40: from 5 CPUs on),
each worker shares a pool of budget / workers between its threads instead
(database/plan.py): 16 workers, 200 clients on /demo/db?ms=50 opened 32
connections, with no error. Measured on 2 CPUs, 100 clients on /demo/io?ms=50:
454 requests/s of the 469 bound.

Trap, measured here with gunicorn 27.0.1 (5 workers x 8 threads, 100 keep-alive
clients, /demo/io?ms=50 for 10 s, bound 780 requests/s): a gthread worker
accepts connections up to worker_connections (1000 by default) whether or not it
has a free thread, and keep-alive pins each connection to its worker. With the
defaults one worker held 66 to 92 of the 100 sockets: 300 to 600 requests/s.
Keep-alive off alone: still 60 to 77 sockets on one worker, 590 requests/s.
Hence both settings below: a worker takes a connection only when it has a free
thread, the next one waits in the kernel's accept queue for any worker, and
each connection carries one request: 630 to 750 requests/s, sockets spread
evenly. The cost is a TCP handshake per request between the load balancer and
gunicorn. (Keep-alive with worker_connections = 2 x threads did 720 to 755, but
clients beyond workers x 16 connections waited in the accept queue, some for
over 2 s.)

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
keepalive = 0
# As in sync.py: fork from a master that has imported Django already.
preload_app = True
when_ready = base.log_startup("gthread", sized)
