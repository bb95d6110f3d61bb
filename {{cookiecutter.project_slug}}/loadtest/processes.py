"""Child processes that cannot outlive the load test: gunicorn, Locust, and their workers.

Each child starts in a session (process group) of its own, so stopping it stops
the workers it forked too, and a Ctrl-C in the terminal reaches only this
process, which then stops them in order. On Linux each child also asks the
kernel for SIGTERM should this process die without cleaning up (killed with
SIGKILL, say): no gunicorn or Locust is ever left behind.
"""

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1
# Loaded here, in the parent: the child may only make the system call between fork and exec.
LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _child_setup(cpus):
    """Runs in the child between fork and exec: its CPUs, and SIGTERM if the parent dies."""

    def setup():
        if LIBC is not None:
            LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    return setup


def start(args, *, env, cwd=None, cpus=None, stdout=None):
    """Start `args` in a process group of its own, on `cpus` (None: wherever this one runs)."""
    return subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # Safe with threads running here: it takes no lock and imports nothing.
        preexec_fn=_child_setup(cpus),
    )


def stop(process, grace=30.0):
    """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL what is left.

    The SIGKILL comes whatever happens meanwhile, a second Ctrl-C included.
    """
    try:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    finally:
        # Workers the leader did not reap (or that outlived it) go with the group.
        _signal_group(process, signal.SIGKILL)
        process.wait()
    return process.returncode


def _signal_group(process, signum):
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(process.pid, signum)


@contextmanager
def running(args, *, grace=30.0, **options):
    """`start` for the length of a `with` block; stopped however the block ends."""
    process = start(args, **options)
    try:
        yield process
    finally:
        stop(process, grace)
