"""asgi: gunicorn's own ASGI worker, one event loop (uvloop) per CPU.

For: async views (async def) and streaming responses. Django runs sync views and
sync middleware under ASGI in a thread per request, one extra hop each: for a
service whose views are sync, that costs about twice gthread's CPU per request
(3 ms against 1.4 on /demo/io?ms=50 here, 2 CPUs). With 100 clients waiting
50 ms each, asgi still served 531 requests/s where gthread's 24 threads, all
busy, served 454; on /demo/db?ms=50 and the mixed scenario gthread led, 429
and 440 against 304 and 285 (`nox -s loadtest`, see README.md).

Even an async view pays for Django's sync parts: its request signals and the
hooks of Django's own middlewares (MiddlewareMixin) hop to a thread and back,
about a dozen hops a request. The kit's middlewares are async-capable, and so is
its WhiteNoise (staticfiles.py), and each request's thread is kept for the next
one (workers/threads.py): /demo/io-async?ms=50 with 100 clients, 572 requests/s
where the preset served 425 before them (medians of three wrk runs), against
2,000 for 100 clients that each wait 50 ms. Django with no middleware at all
served 1,300 under gunicorn's worker, and an ASGI app without Django 1,890:
what is left is Django's, not the server's.

gunicorn's worker (stable since gunicorn 25.1) rather than uvicorn-worker: no
other server to install, and the same settings, signals and logs as the other
presets.
Neither limits connections per worker (worker_connections is ignored).

Sizing: one worker per CPU: one event loop uses one CPU at most.

Cost: 2 CPUs: 2 processes (60 MB each here), and no limit on requests in
flight: each one running sync code holds a thread. Database connections come
from a pool per worker, DATABASE_CONNECTION_BUDGET / workers of them (as in
gevent.py): a request waits for one up to DJANGO_DB_POOL_TIMEOUT, then gets a
503. CONN_MAX_AGE is 0, as Django's docs ask under ASGI: with persistent
connections, 50 clients on /demo/db ran PostgreSQL out of connections in 5 s
here. Limit concurrency at the load balancer all the same: each request in
flight holds a thread, waiting for a connection or not.

Traps:
- Blocking calls inside async views stall the whole loop; `timeout`
  (GUNICORN_TIMEOUT) kills a worker whose loop has not come back for that long.
  It does not bound a request.
- Django has no ASGI lifespan support: lifespan is off, not probed at each boot.
- WhiteNoise answers with sync iterators, which Django serves through a thread
  and warns about once per worker: put static files behind a CDN or the proxy.
- Keep-alive is 75 s, longer than the load balancer's idle timeout: see
  gevent.py.

Event loop: uvloop, not asyncio's, for two reasons measured with `nox -s
loadtest` (2 CPUs, psycopg2, 100 clients, three runs each):
- asyncio accepts up to 100 waiting connections each time the listening
  socket wakes a worker, and keep-alive keeps each connection with the worker
  that accepted it: 100 clients connecting at once ended 4/96, 27/73 or 81/19
  between 2 workers, and the busy worker, with one CPU and half the database
  pool, did the work of both (/demo/db?ms=50: 232 requests/s at worst).
  With uvloop, six fresh servers split them 46/54 to 54/46.
- It is faster, even against an asyncio loop made to accept one connection
  per wake-up: /demo/io?ms=50 377 to 437 requests/s (mean 416) against 335 to
  412 (370); /demo/db?ms=50 316 to 410 (350) against 304 to 323 (313): 12 %
  either way, with no failed request in either.

Slow queries: no timeout here ends one, and a query that never returns keeps its
pooled connection; PostgreSQL cancels it after DJANGO_DB_STATEMENT_TIMEOUT (20 s
by default under the presets), a 500 that error reporting sees
(database/settings.py).
"""

from config.gunicorn import base, workers
from config.gunicorn.base import *  # noqa: F403 - shared settings, hooks: base.__all__

worker_class = workers.CLASSES["asgi"]  # gunicorn's, guarded: see workers/
wsgi_app = f"{base.DJANGO_PROJECT}.asgi:application"
sized = base.size("asgi")
workers = sized.workers
asgi_lifespan = "off"
asgi_loop = "uvloop"  # see above; a dependency of the project
keepalive = 75
# As in sync.py: fork from a master that has imported Django already.
preload_app = True
when_ready = base.log_startup("asgi", sized)
