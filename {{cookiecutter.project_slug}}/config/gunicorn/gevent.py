"""gevent: one event loop per CPU, a greenlet per connection.

For: many slow, I/O-bound requests at once: long polling, streaming, calls to
slow upstream services, hundreds to thousands of them. gevent makes blocking
calls (sockets, time.sleep, the database driver) switch to another greenlet
instead of blocking the process.

Sizing: one worker per CPU x 1000 connections (GUNICORN_WORKER_CONNECTIONS).
One event loop uses one CPU at most, so more workers than CPUs buy nothing;
concurrency comes from connections, which cost a few KB each, not threads.

Cost: 2 CPUs: 2 processes (60 MB each here), 2000 requests at a time, and, with
no pool in front of PostgreSQL, a database connection per request in flight:
far more than PostgreSQL's default max_connections (100).
Persistent connections are off (raw_env below; in another project, set
CONN_MAX_AGE = 0 in its settings): a connection kept by a finished greenlet is
never reused nor closed, and clients without keep-alive ran PostgreSQL out of
connections in seconds here. Without them each request
connects anew: 230 requests/s for 20 clients on /demo/db?ms=20 on 2 CPUs.

Traps:
- Anything that blocks without yielding (CPU-bound code, a C library doing its
  own I/O) stalls every request of the worker. `timeout` (GUNICORN_TIMEOUT)
  then kills a worker whose loop has not come back for that long; it does not
  bound a request.
- Monkey-patching must come first: the two lines below, before any import,
  and preload_app off, so that workers import Django after the patch.
{%- if cookiecutter.database_driver == "psycopg2" %}
- psycopg2 waits for PostgreSQL inside C, blocking the whole worker for every
  query, until psycogreen's patch_psycopg() has run after the patch below.
{%- endif %}
- Keep-alive is 75 s, longer than the load balancer's idle timeout (60 s on
  AWS ALB and nginx): a server that closes an idle connection first races the
  balancer's next request on it, which gets a 502. (Google Cloud keeps backend
  connections 600 s: use --keep-alive 620 there.)
"""

from gevent import monkey

monkey.patch_all()

from config.gunicorn import common  # noqa: E402 - after the patch, on purpose
from config.gunicorn.common import (  # noqa: E402, F401 - gunicorn reads these names
    access_log_format,
    accesslog,
    bind,
    control_socket,
    control_socket_disable,
    forwarded_allow_ips,
    graceful_timeout,
    limit_request_field_size,
    limit_request_fields,
    limit_request_line,
    max_requests,
    max_requests_jitter,
    timeout,
    worker_tmp_dir,
    wsgi_app,
)

worker_class = "gevent"
workers, workers_from = common.size_workers(common.cpu.cpus, "CPUs")
worker_connections = common.env.worker_connections or 1000
keepalive = 75
preload_app = False
raw_env = ["DJANGO_CONN_MAX_AGE=0"]
when_ready = common.log_startup("gevent", workers, workers_from)
