"""The presets' worker classes: gunicorn's own, with what they lack with slow or greedy
clients, at shutdown, and over a long life.

    limits.py     what a request must be, and how fast its head and body must come,
                  before the application sees it: every worker applies it
    lifecycle.py  a stop sent while a worker boots is not lost; settings read as
                  attributes; recycling (recycle.py: a worker is replaced when its
                  memory has grown, never two at once)
    responses.py  how the WSGI workers write a response: in fewer system calls than
                  gunicorn, its Date header formatted once a second
    sync.py gthread.py gevent.py asgi.py   each worker model's class, and what it adds
                  for its own model: see each module

Each class says which worker model it is (`model`), for the checks and the
start-up line. Cost, in CPU time per request against gunicorn's own class of
the same model and worker count, each preset as shipped (access line, metrics,
request IDs on), the two served at once on one CPU with wrk on the other, 30
connections each, medians of 5 rounds of 8 s:

    preset    /healthz                    /demo/io?ms=50
    sync      253 against 261 us (103 %)   1,517 against 1,574 us (104 %)
    gthread   242 against 269 (111 %)      859 against 937 (109 %)
    gevent    219 against 226 (103 %)      599 against 658 (110 %)
    asgi      606 against 925 (153 %)      2,719 against 3,112 (114 %)

(the share is stock's throughput a CPU that the preset serves). They pay for
their work on each request with less of gunicorn's: a response written in fewer
system calls (responses.py), settings read as attributes (lifecycle.py); asgi
with a thread kept per request (asgi.py). Before those, on /healthz, sync
served 92 %, gthread 95 % and gevent 86 % of stock. `nox -s loadtest --
--presets ...,stock` compares them on your machine.
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
