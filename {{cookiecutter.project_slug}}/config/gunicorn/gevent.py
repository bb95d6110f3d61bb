"""gevent: one event loop per CPU, a greenlet per connection.

For: many slow, I/O-bound requests at once: long polling, streaming, calls to
slow upstream services, hundreds to thousands of them. gevent makes blocking
calls (sockets, time.sleep, the database driver) switch to another greenlet
instead of blocking the process.

Sizing: one worker per CPU x 1000 connections (GUNICORN_WORKER_CONNECTIONS).
One event loop uses one CPU at most, so more workers than CPUs buy nothing;
concurrency comes from connections, which cost a few KB each, not threads.

Cost: 2 CPUs: 2 processes (60 MB each here) and 2000 requests at a time, but
never more database connections than DATABASE_CONNECTION_BUDGET (40 by
default, see database/plan.py): each worker gets a pool of budget / workers
connections (20 here), shared by its greenlets. A request that finds them all
busy waits up to DJANGO_DB_POOL_TIMEOUT (10 s), then gets a 503. CONN_MAX_AGE
is 0: a connection goes back to the pool at the end of each request. Without
the pool, a greenlet would keep a persistent connection of its own, never
reused; with none kept (CONN_MAX_AGE 0 alone), each request paid for a new
connection (about 10 ms here) and bursts still ran PostgreSQL out of them.
Measured on 2 CPUs, 500 clients on /demo/db?ms=50, bound 40 / 50 ms = 800
requests/s: 660 to 710 requests/s with either driver, no errors, 40
connections at most, p99 about 1 s (the wait for the pool).
The settings must do the same: pooled() (database/settings.py) makes them, and
the master refuses to start when they do not (database/verify.py).

Traps:
- Anything that blocks without yielding (CPU-bound code, a C library doing its
  own I/O) stalls every request of the worker. `timeout` (GUNICORN_TIMEOUT)
  then kills a worker whose loop has not come back for that long; it does not
  bound a request.
- Monkey-patching must come first: the two lines below, before any import, so
  that everything gunicorn loads afterwards, the app included, gets gevent's
  socket, ssl, threading and select. (gunicorn imports those modules before
  it reads any config file: gevent patches them in place, with no
  MonkeyPatchWarning.) Before forking any worker, the master checks the patch,
  and that the database driver waits through gevent (psycogreen for
  psycopg2): see cooperative.py, which a copy of this preset needs too.
- Keep-alive is 75 s, longer than the load balancer's idle timeout (60 s on
  AWS ALB and nginx): a server that closes an idle connection first races the
  balancer's next request on it, which gets a 502. (Google Cloud keeps backend
  connections 600 s: use --keep-alive 620 there.)
- Keep-alive keeps each client with the worker that accepted it. When a worker
  is replaced (its memory grew: workers/recycle.py), its clients reconnect to
  the workers still running, which keep them: more workers, on more CPUs, make
  a smaller share; so does a proxy in front that recycles its connections (see
  README.md, "Traps, measured"). gunicorn's max_requests did this every 3 to 4 s
  at 2,800 requests/s per worker, and cost 18 % of the throughput: the presets
  no longer set it.
- A worker serves 1,000 connections; past that it closes its longest-idle one,
  or answers a new one 503 after 1 s at most (probes are still served), so
  that nothing waits in the listen backlog. Every phase of a connection is
  bounded in time (workers/gevent.py): slow clients cannot hold them all.

Slow queries: no timeout here ends one, and a query that never returns keeps its
pooled connection from every other request; PostgreSQL cancels it after
DJANGO_DB_STATEMENT_TIMEOUT (20 s by default under the presets), a 500 that
error reporting sees (database/settings.py).
"""

from gevent import monkey

monkey.patch_all()

from config.gunicorn import base, cooperative, workers  # noqa: E402 - after the patch, on purpose
from config.gunicorn.base import *  # noqa: E402, F403 - shared settings, hooks: base.__all__

worker_class = workers.CLASSES["gevent"]  # gunicorn's, guarded: see workers/
sized = base.size("gevent")
workers = sized.workers
worker_connections = sized.worker_connections
keepalive = 75
# Import Django once in the master, after the patch, then fork, as sync.py does: workers
# boot in milliseconds and share the imported code's memory pages.
preload_app = True
on_starting = cooperative.on_starting
when_ready = base.log_startup("gevent", sized)
