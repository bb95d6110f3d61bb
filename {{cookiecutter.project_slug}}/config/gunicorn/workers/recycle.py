"""When a worker is replaced: once its memory has grown, not after a number of requests.

gunicorn's max_requests replaces a worker after a count of requests. A count is
no policy: at the 2,800 requests/s a gevent worker serves on /healthz here,
10,000 requests meant a restart every 3 to 4 s, each dropping that worker's
kept-alive clients onto the others (the presets served 18 % fewer requests
with it); at 10 requests/s the same count recycles every 15 minutes whether
memory grows or not. What a recycle is for is memory that grows (a leak,
fragmentation), so that is what this policy watches:

- A worker's size is its RSS once it has served WARMUP_REQUESTS requests:
  by then Django has imported its views and filled its caches.
- It is replaced once its RSS has grown GUNICORN_RECYCLE_GROWTH_MIB past that
  size (256 MiB by default; 0 turns the policy off). Checked at most every
  CHECK_EVERY_S, on the worker's heartbeat.
- At most one worker of an instance every GUNICORN_RECYCLE_INTERVAL seconds
  (60), and never two at once: the workers share a lock, which the worker
  being replaced holds until its process ends, a kill -9 included.

Cost: 0.2 us per heartbeat, and 20 us to read the RSS every CHECK_EVERY_S.

A worker being replaced stops as gunicorn's max_requests stops it: it accepts
no new connection, finishes what it has, and answers the next request on each
kept-alive connection with `Connection: close`; the master forks its
replacement once it has exited (see lifecycle.py).
"""

import atexit
import fcntl
import os
import resource
import sys
import tempfile
import time

MIB = 1024 * 1024
WARMUP_REQUESTS = 1_000
CHECK_EVERY_S = 5.0

_turns = None  # the file every worker shares: see turns()


class MemoryRecycle:
    """One worker's view of the policy: `due()` on each heartbeat."""

    def __init__(self, growth_mib, interval_s):
        turns()  # in the master, before the worker forks: one file for all of them
        self.growth_mib = growth_mib
        self.interval_s = interval_s
        self.warm_size = None
        self.next_check = 0.0

    def due(self, served):
        """Why this worker is to be replaced now, in a few words, or None.

        `served`: the requests it has served so far. The turn, once given, is this
        worker's until its process ends.
        """
        now = time.monotonic()
        if not self.growth_mib or now < self.next_check:
            return None
        self.next_check = now + CHECK_EVERY_S
        if served < WARMUP_REQUESTS:
            return None
        size = resident_bytes()
        if self.warm_size is None:
            self.warm_size = size
            return None
        grown = size - self.warm_size
        if grown < self.growth_mib * MIB or not take_turn(self.interval_s):
            return None
        return (
            f"RSS {size / MIB:.0f} MiB, {grown / MIB:.0f} MiB over its {self.warm_size / MIB:.0f} "
            f"MiB after warm-up (GUNICORN_RECYCLE_GROWTH_MIB={self.growth_mib})"
        )


def take_turn(interval_s):
    """Whether this process may be replaced now: none is, and none was for `interval_s`.

    A POSIX record lock belongs to the process that takes it: the others cannot take it
    until that process releases it or ends. The file holds when the last turn began.
    """
    fd = turns().fileno()
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # another worker is being replaced
    now = time.monotonic()  # one clock for every process of the machine
    last = os.pread(fd, 32, 0).strip()
    if last and now - float(last) < interval_s:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    os.pwrite(fd, f"{now:<32.3f}".encode(), 0)
    return True


def turns():
    """The file the workers share, created once, by the master (unlinked: nothing is left)."""
    global _turns
    if _turns is None:
        _turns = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the process
        atexit.register(_turns.close)
    return _turns


def resident_bytes():
    """This process's resident set size: /proc on Linux, the peak elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes there, KiB here
