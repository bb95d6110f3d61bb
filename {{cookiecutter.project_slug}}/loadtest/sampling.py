"""What the server, the load generator and the database use while a run goes (psutil).

- CPU, in cores: the CPU time a process tree used over the measured window. A
  gunicorn master's `children_*` times count the workers it has already reaped
  (max_requests restarts), so no worker's time is lost between samples.
- Memory of the server, master and workers together: the peak of the sum of
  their PSS (proportional set size: a page shared by N processes counts 1/N in
  each), which is what the preset really costs; the sum of RSS counts every
  shared page once per process. Both are reported; PSS needs Linux.
- The peak number of the server's connections to the database, from
  pg_stat_activity: the server runs with PGAPPNAME set, so other clients of
  the same database do not count.
- How evenly the workers share the clients' connections: the busiest worker's
  share of them, on average. Keep-alive pins a connection to the worker that
  accepted it, and workers accept unevenly: a worker with most of the
  connections, and only its share of the database pool, caps a whole preset.

- The CPU of the upstream the scenario calls, if any (/demo/upstream): it runs
  on the server's CPUs, so it is not the server's to use either.

Sampling starts when Locust reports every user running, and stops when it
stops running: start-up and ramp-up are not measured, as Locust's own numbers
(--reset-stats) are not. Other samplers of the server (a Watcher each: its
metrics endpoint, say) are started and stopped with the same window, and what
they return goes into the run's measurements under their name.
"""

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import psutil

INTERVAL_S = 0.5
# Listing a process's sockets reads the whole TCP table: every few samples is enough.
WORKER_SHARE_EVERY = 2
MIB = 1024 * 1024
# A Locust process this busy is what limits the run: one process uses one CPU at most.
GENERATOR_BOUND_CPU = 0.9


def process_tree(pid):
    """The process and its descendants that are still alive."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(processes):
    """{pid: CPU seconds} of each process, reaped children's time included."""
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds[process.pid] = (
            times.user + times.system + times.children_user + times.children_system
        )
    return seconds


def tree_cpu_seconds(pid):
    return sum(cpu_seconds(process_tree(pid)).values())


def memory_mib(processes):
    """(RSS, PSS or None) of the processes together, in MiB."""
    rss = pss = 0
    for process in processes:
        try:
            info = process.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            info = process.memory_info()
        rss += info.rss
        pss = None if pss is None or not hasattr(info, "pss") else pss + info.pss
    return rss / MIB, None if pss is None else pss / MIB


@dataclass
class Usage:
    seconds: float = 0.0  # length of the measured window
    server_cpu: float | None = None  # cores
    generator_cpu: float | None = None  # cores, every Locust process together
    busiest_generator_cpu: float | None = None  # cores, the busiest Locust process
    rss_mib: float | None = None
    pss_mib: float | None = None
    peak_db_connections: int | None = None
    busiest_worker_share: float | None = None  # of the clients' connections; None: 1 worker
    upstream_cpu: float | None = None  # cores: the upstream's, when the scenario calls one
    watched: dict = field(default_factory=dict)  # {watcher's name: what it returned}

    @property
    def generator_bound(self):
        return (self.busiest_generator_cpu or 0) >= GENERATOR_BOUND_CPU


class Watcher(Protocol):
    """Something else to sample the server with over a run's measured window."""

    name: str

    def sample(self, server):
        """Called every INTERVAL_S while every user runs."""

    def result(self):
        """What it found, JSON-serialisable: stored in the run's usage under `name`."""


METRICS_WATCHER = "metrics"


class MetricsWatcher:
    """The server's own metrics over the measured window: the figures production alerts on.

    A Watcher (above) around config.gunicorn.observability.lab.Watch, which scrapes the
    instance's /metrics from the first sample on and reads its figures at the end.
    """

    name = METRICS_WATCHER

    def __init__(self, url):
        self.url = url
        self.watch = None

    def sample(self, server):
        if self.watch is None:
            from config.gunicorn.observability.lab import Watch

            self.watch = Watch(self.url).__enter__()

    def result(self):
        if self.watch is None:
            return None
        try:
            self.watch.__exit__(None, None, None)
        except OSError as exc:  # the server went away: the run says so elsewhere
            return {"error": str(exc)}
        return self.watch.figures


class Sampler:
    """Samples in a thread while Locust's progress file says its users are running."""

    def __init__(
        self,
        server,
        generator_pid,
        progress_path,
        count_db_connections=None,
        upstream=None,
        watchers=(),
    ):
        self.server = server
        self.generator_pid = generator_pid
        self.progress_path = progress_path
        self.count_db_connections = count_db_connections
        self.upstream = upstream
        self.watchers = watchers
        self.usage = Usage()
        self.progress = {}
        self._worker_shares = []
        self._snapshots = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._done.set()
        self._thread.join()

    def read_progress(self):
        with contextlib.suppress(OSError, ValueError):  # not written yet
            self.progress = json.loads(self.progress_path.read_text())
        return self.progress

    def _run(self):
        first = last = None
        try:
            while not self._done.wait(INTERVAL_S):
                if self.read_progress().get("state") != "running":
                    if first is not None:
                        break  # stopping: the measured window is over
                    continue
                snapshot = self._snapshot()
                if snapshot is None:
                    break  # Locust has exited meanwhile
                first = first or snapshot
                last = snapshot
        finally:
            if self.count_db_connections is not None:
                self.count_db_connections.close()
        if first is not None and last is not first:
            self._rates(first, last)
        self.usage.watched = {watcher.name: watcher.result() for watcher in self.watchers}
        if self._worker_shares:
            self.usage.busiest_worker_share = sum(self._worker_shares) / len(self._worker_shares)

    def _snapshot(self):
        server = process_tree(self.server.process.pid)
        rss, pss = memory_mib(server)
        usage = self.usage
        usage.rss_mib = max(usage.rss_mib or 0, rss)
        if pss is not None:
            usage.pss_mib = max(usage.pss_mib or 0, pss)
        if self.count_db_connections is not None:
            connections = self.count_db_connections(self.server.application_name)
            usage.peak_db_connections = max(usage.peak_db_connections or 0, connections)
        if self._snapshots % WORKER_SHARE_EVERY == 0:
            self._sample_worker_shares(server[1:])
        self._snapshots += 1
        for watcher in self.watchers:
            watcher.sample(self.server)
        generator = cpu_seconds(process_tree(self.generator_pid))
        if not generator:
            return None
        upstream = cpu_seconds(process_tree(self.upstream.process.pid)) if self.upstream else {}
        return time.monotonic(), cpu_seconds(server), generator, upstream

    def _sample_worker_shares(self, workers):
        """The busiest worker's share of the established client connections, now."""
        if len(workers) < 2:
            return
        counts = []
        for worker in workers:
            try:
                connections = worker.net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            counts.append(
                sum(
                    1
                    for connection in connections
                    if connection.status == psutil.CONN_ESTABLISHED
                    and connection.laddr.port == self.server.port
                )
            )
        if sum(counts) >= len(workers):
            self._worker_shares.append(max(counts) / sum(counts))

    def _rates(self, first, last):
        seconds = last[0] - first[0]
        self.usage.seconds = seconds
        self.usage.server_cpu = (sum(last[1].values()) - sum(first[1].values())) / seconds
        generator = {
            pid: (cpu - first[2][pid]) / seconds for pid, cpu in last[2].items() if pid in first[2]
        }
        self.usage.generator_cpu = sum(generator.values())
        self.usage.busiest_generator_cpu = max(generator.values(), default=0.0)
        if self.upstream is not None:
            self.usage.upstream_cpu = (sum(last[3].values()) - sum(first[3].values())) / seconds


class DatabaseConnections:
    """Counts a server's connections to this database, through Django's own, from one thread."""

    QUERY = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = %s"
    )
    # Connections a client without superuser rights may still open on the whole server.
    FREE = (
        "SELECT current_setting('max_connections')::int"
        " - current_setting('superuser_reserved_connections')::int"
        " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
    )

    def __call__(self, application_name):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(self.QUERY, [application_name])
            return cursor.fetchone()[0]

    def free(self):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(self.FREE)
            return cursor.fetchone()[0]

    def close(self):
        from django.db import connection

        connection.close()
