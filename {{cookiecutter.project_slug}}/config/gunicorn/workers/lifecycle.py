"""A worker's life: forked from a frozen master; told to stop while it boots, it stops; its
settings settled; grown too large, it is replaced.

Stopping during boot. The master forks a worker with its own signal handlers,
which only queue a signal for the master's loop; the worker installs its own a
few milliseconds later. A SIGTERM the master sends in between (a deploy or a
scale-down right after start, a test stopping what it started) was queued in
the worker's copy of that queue and lost: the worker served on, and the
master waited its whole graceful_timeout for it (25.2 s instead of under 1).
Here the stop signals are blocked from just before the fork until the worker's
own handlers are in place, so a stop sent meanwhile waits for them. (The asgi
worker's handlers are its event loop's, and uvloop drops a signal that arrives
before the loop runs: there they wait for the loop. 20 starts of each preset,
each stopped as the master forked its workers: 4 asgi masters took 25 s
without that.)

Frozen before the fork. The master moves everything it has built (Django, the
app, the settings) out of the garbage collector's reach (gc.freeze) right before
each fork, as Python's documentation advises for a process that forks without
exec: a worker's collections no longer touch those objects, so their memory
pages stay shared with the master, and a worker's exit, which tears them down,
took 0.07 s instead of 0.25 (gevent and sync, measured from "Worker exiting" to
the process gone). A stop during boot then ends within the 5 s a test allows
even with every CPU busy.

Settings settled after the fork. gunicorn's Config holds its settings in a
dictionary and reads one through __getattr__ (a method call, a lookup, the
setting's own get()) every time gunicorn's code reads it: 22 times for a
/healthz request in a gevent worker. A worker's settings never change once it
runs (a reload forks new workers), so as it starts running it copies each one
onto the Config itself, where a read is an attribute's (`settle`). On /healthz,
each preset beside gunicorn's own worker class at once on one CPU (CPU time a
request, medians of 5 rounds): gevent 239 -> 220 us (stock 223), sync 278 -> 256
(stock 267), gthread 267 -> 243 (stock 267).

Recycling. On each heartbeat the worker asks the memory policy (recycle.py)
whether it is its turn to be replaced, and if so stops as a SIGTERM would stop
it, minus what only a stopping instance does (serving the listen backlog):
the other workers take the new connections.
"""

import gc
import os
import signal

from config.gunicorn.environment import read_environment
from config.gunicorn.workers.recycle import MemoryRecycle

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}
# How long a stopping worker waits for the next request on a kept-alive connection, which
# its last response said stays open (gunicorn's gthread worker: STOP_KEEPALIVE_LINGER).
STOP_LINGER_S = 2
_release_registered = False


def hold_stop_signals():
    """Block the stop signals in the master until the fork that follows has happened.

    The child inherits the mask, and releases it once its handlers are installed
    (Lifecycle.init_signals); the master releases it right after the fork.
    """
    global _release_registered
    if not _release_registered:
        os.register_at_fork(after_in_parent=release_stop_signals)
        _release_registered = True
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release_stop_signals():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def settle(cfg):
    """Copy each of gunicorn's settings onto `cfg` itself: read there, __getattr__ is not called.

    Config refuses attributes named like its settings (its __setattr__), so they are
    set past it, with object.__setattr__: the one place the kit goes around gunicorn's
    Config (tests/test_workers.py checks it on the gunicorn installed). What the class
    defines itself (properties, methods) stays the class's.
    """
    for name, setting in cfg.settings.items():
        if not hasattr(type(cfg), name):
            object.__setattr__(cfg, name, setting.get())


class Lifecycle:
    """The worker's part; `stop_accepting()` is each worker model's own (a no-op by default)."""

    recycling = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # in the master, right before the fork
        env = read_environment()
        self.recycle = MemoryRecycle(env.recycle_growth_mib, env.recycle_interval)
        gc.freeze()
        hold_stop_signals()

    def init_signals(self):
        super().init_signals()
        self.release_stop_signals_once_handled()

    def run(self):
        settle(self.cfg)  # after the hooks that may still set something: post_worker_init
        super().run()

    def release_stop_signals_once_handled(self):
        """Deliver a stop sent during the boot to the handlers just installed."""
        release_stop_signals()

    def notify(self):
        super().notify()
        if self.alive and not self.recycling:
            reason = self.recycle.due(self.nr)
            if reason:
                self.log.info("Replacing worker %s: %s", self.pid, reason)
                self.recycling = True
                self.stop_for_replacement()

    def stop_for_replacement(self):
        self.alive = False
        self.stop_accepting()

    def stop_accepting(self):
        """Wake whatever waits for connections, for it to see `alive` is False."""
