"""The presets' worker classes: gunicorn's own, with what they lack with slow or greedy
clients, at shutdown, and over a long life.

    limits.py     what a request must be, and how fast its head and body must come,
                  before the application sees it: every worker applies it
    lifecycle.py  a stop sent while a worker boots is not lost; recycling (recycle.py:
                  a worker is replaced when its memory has grown, never two at once)
    responses.py  how the WSGI workers write a response: in fewer system calls than
                  gunicorn, its Date header formatted once a second
    sync.py gthread.py gevent.py asgi.py   each worker model's class, and what it adds
                  for its own model: see each module

Each class says which worker model it is (`model`), for the checks and the
start-up line. Cost, in CPU time per request on /healthz against gunicorn's own
class of the same model and worker count, each preset as shipped (access line,
metrics, request IDs on), both served at once on one CPU with wrk on the other,
medians of 5 rounds: sync 274 against 264 us (96.4 % of stock's throughput),
gthread 267 against 259 (97.1 %), gevent 237 against 219 (92.5 %: gevent.py says
where), asgi 1,169 against 1,110 (95 %, an earlier run). On /demo/io?ms=50,
where the wait bounds throughput, the sync, gthread and gevent presets serve as many requests as
stock gunicorn (gthread more); asgi, whose sync view costs 3 to 4 ms of CPU in a
thread, 95 %. `nox -s loadtest -- --presets ...,stock` compares them on your
machine.
"""

from gunicorn.workers import SUPPORTED_WORKERS

# The class each preset runs, by worker model: module paths, so that a preset imports only
# its own (the sync preset never imports gevent).
CLASSES = {
    "sync": f"{__name__}.sync.GuardedSyncWorker",
    "gthread": f"{__name__}.gthread.GuardedThreadWorker",
    "gevent": f"{__name__}.gevent.GuardedGeventWorker",
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
