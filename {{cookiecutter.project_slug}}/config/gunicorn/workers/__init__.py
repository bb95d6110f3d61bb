"""The presets' worker classes: gunicorn's own, with what they lack at shutdown and with
slow or greedy clients.

- Shutdown (sync, gthread). On SIGTERM (a deploy, a scale-down, `docker stop`)
  gunicorn's sync and gthread workers stop accepting, and the connections the
  kernel had already accepted for them, waiting in the listen backlog, are
  reset when the last worker exits: with 50 requests of 1 s in flight, sync
  answered 5 and gthread 25. These workers keep accepting until the backlog
  is empty, within the graceful timeout: 50 of 50. gevent and asgi workers
  accept everything at once, so nothing waits in their backlog.
- Slow clients (gevent, asgi). A client that sends its request head a byte at
  a time (slowloris) holds whatever serves it. sync and gthread are for running
  behind a buffering proxy, which reads whole requests before passing them on
  (deploy/nginx/). gevent and asgi, also run without one, close a connection
  whose first request head has not arrived within REQUEST_HEAD_TIMEOUT:
  gunicorn's gevent worker waits up to its keep-alive timeout (75 s here), its
  asgi worker forever.
- Large bodies (all). A request whose Content-Length is over
  GUNICORN_MAX_REQUEST_BODY gets a 413 before its body is read (limits.py).
- Unread bodies (sync, gthread, gevent). What the application left of a body
  is read before the connection closes, so that closing does not reset it and
  nginx answers with the application's response, not a 502 (limits.py).
- Absolute-form request lines (asgi). `GET http://host/path HTTP/1.1` gives
  gunicorn 27's asgi worker a path of `http://host/path`, which Django then
  puts after the host in redirects: the worker keeps the path only, as
  gunicorn's WSGI parser does.

Each class says which worker model it is (`model`), for the checks and the
start-up line.
"""

from gunicorn.workers import SUPPORTED_WORKERS

# The class each preset runs, by worker model: module paths, so that a preset imports only
# its own (the sync preset never imports gevent).
CLASSES = {
    "sync": f"{__name__}.sync.DrainingSyncWorker",
    "gthread": f"{__name__}.gthread.DrainingThreadWorker",
    "gevent": f"{__name__}.gevent.HeadTimeoutGeventWorker",
    "asgi": f"{__name__}.asgi.GuardedASGIWorker",
}


def model_of(worker_class):
    """sync, gthread, gevent or asgi: the worker model of a worker_class setting.

    `worker_class` is gunicorn's short name (gevent), a module path, ours or
    gunicorn's, or a class; anything else is returned as it is.
    """
    if isinstance(worker_class, type):
        return getattr(worker_class, "model", worker_class.__name__)
    for names in (CLASSES, SUPPORTED_WORKERS):
        for model, path in names.items():
            if worker_class == path:
                return model
    return worker_class
