"""asgi: gunicorn's own ASGI worker, one asyncio event loop per CPU.

For: async views (async def) and streaming responses. Django runs sync views and
sync middleware under ASGI in a thread per request, one extra hop each: for a
service whose views are sync, gthread does the same work faster (on 2 CPUs,
100 clients on /demo/io?ms=50: 250 to 320 requests/s here, gthread 457).

gunicorn's worker (stable since gunicorn 25.1) rather than uvicorn-worker: no
extra dependency, and the same settings, signals and logs as the other presets.
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
"""

from config.gunicorn import common
from config.gunicorn.common import *  # noqa: F403 - shared settings, hooks: common.__all__

worker_class = "asgi"
wsgi_app = f"{common.DJANGO_PROJECT}.asgi:application"
workers, workers_from = common.size_workers(common.cpu.cpus, "CPUs")
asgi_lifespan = "off"
keepalive = 75
# As in sync.py: fork from a master that has imported Django already.
preload_app = True
when_ready = common.log_startup("asgi", workers, workers_from)
