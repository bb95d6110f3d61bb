"""Open files: the master lifts its soft limit to the hard one before any worker forks.

Each connection a worker holds is an open file. A shell, a systemd service and
some container runtimes start a process with a soft limit of 1,024, where a
gevent worker holds up to 2,000 connections (worker_connections, and as many
again to shed: workers/gevent.py) and a gthread worker 1,000. Past the limit,
accept() fails: one gevent worker started that way, 1,100 kept-alive clients
sending two requests each, 204 of the 2,200 requests failed (80 "Too many open
files" tracebacks in its log), none with the limit lifted. The soft limit is
a process's own to raise, up to the hard one, which only an administrator or
the container runtime sets; Go's runtime (since 1.19) and the JVM raise it the
same way. Workers inherit it.

Where the hard limit itself is too low for a worker's connections, start-up
says so in a warning line, with what to change.
"""

import resource

# Open files a worker needs besides its clients: its database pool, outbound calls, logs,
# the metrics files, the listening sockets.
RESERVE = 100


def lift_soft_limit():
    """Raise this process's soft limit of open files to its hard limit; return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # an unlimited hard limit where the kernel caps it (macOS)
        return soft
    return hard


def shortfall(model, connections):
    """A warning if a worker of `model` holding `connections` needs more files than it may open."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if connections is None or limit == resource.RLIM_INFINITY:
        return None
    needed = connections + RESERVE
    if needed <= limit:
        return None
    return (
        f"Open files: a {model} worker holds up to {connections:,} connections "
        f"({needed:,} open files), but the limit is {limit:,}: connections past it fail. "
        "Raise the hard limit (LimitNOFILE= in a systemd unit, --ulimit "
        "nofile= for a container, limits.conf) or lower GUNICORN_WORKER_CONNECTIONS"
    )
