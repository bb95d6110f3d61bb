"""sync: one request at a time per process.

For: views that keep the CPU busy (rendering, serialising, computing), and code
that is not safe to run in threads. A sync worker waiting on the database or
another service does nothing else meanwhile: for I/O-bound views use gthread.

Sizing: 2 x CPUs + 1 workers, gunicorn's own rule: one per CPU keeps every CPU
busy, as many again fill the time workers spend waiting on I/O, and a budget of
1 CPU still gets 3. CPUs = the CPU budget (affinity, cgroup quota; see cpu.py).

Cost: one Django process per worker (50 to 60 MB each here) and at most one
database connection each. 2 CPUs: 5 workers, 5 requests at a time, 5
connections; the next request waits in the listen backlog. Measured on 2 CPUs,
100 clients on /demo/io?ms=50: 96 requests/s, the bound of 5 x 20.

Traps:
- `timeout` is the longest a request may run: past GUNICORN_TIMEOUT (30 s) the
  worker is killed mid-request and the client gets a 502 from the proxy.
- No keep-alive: the sync worker closes the connection after each response.
- A slow client ties up a whole worker (for 10 s at most per request head, and
  10 s between two bytes of a body: workers/sync.py): keep a buffering proxy or
  load balancer in front, as gunicorn expects.

Slow queries: PostgreSQL cancels a query after DJANGO_DB_STATEMENT_TIMEOUT (20 s
by default under the presets), under the 30 s worker timeout, so the request
ends in a 500 that error reporting sees rather than a killed worker with no
trace of the query (database/settings.py).
"""

from config.gunicorn import base, workers
from config.gunicorn.base import *  # noqa: F403 - shared settings, hooks: base.__all__

worker_class = workers.CLASSES["sync"]  # gunicorn's, guarded: see workers/
sized = base.size("sync")
workers = sized.workers
# Import Django once in the master, then fork: workers boot in milliseconds (so
# replacing one is cheap) and share the imported code's memory pages.
# Nothing may connect to the database at import: the workers would share the socket.
preload_app = True
when_ready = base.log_startup("sync", sized)
