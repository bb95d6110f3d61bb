"""The gunicorn hooks that run the kit's observability; base.py gives them to every preset.

In the master:
- `prepare` (from nworkers_changed, before the application is preloaded): check
  the variables and what they need installed, make the metrics directory
  (files.py) and start recording the workers' heartbeats (liveness.py);
- `when_ready`: start the metrics and liveness server (server.py);
- `pre_fork`: put the liveness record between the master and each worker's
  heartbeat file;
- `child_exit`: fold a dead worker's metrics into the archives, and count why it
  ended when it could not say so itself (killed at its timeout, crashed);
- `on_exit`: stop the server, remove the directory.
In each worker:
- `post_fork`: its metrics, Sentry, OpenTelemetry, whom to believe an
  X-Request-ID from;
- `post_worker_init`: request IDs in responses, gevent's loop monitor, the
  tracer's middleware, and log handlers where the project has none;
- `worker_abort`, `worker_exit`: why it ended; its last metrics, spans and events.
"""

import contextlib
import logging
import os
import signal
import sys
import time
from importlib.util import find_spec
from pathlib import Path

from config.gunicorn.environment import BadSetting
from config.gunicorn.observability import (
    errors,
    files,
    liveness,
    logs,
    metrics,
    requestid,
    tracing,
)
from config.gunicorn.observability.settings import read_observability
from config.gunicorn.workers import model_of

try:
    settings = read_observability()
except BadSetting as exc:
    sys.exit(str(exc))

SERVER_MODULE = f"{__package__}.server"
SERVER_PID_FILE = "server.pid"  # as server.py writes it
SERVER_START_S = 10.0
# The folder that holds the `config` package: the server process imports it from there.
PROJECT_ROOT = Path(__file__).resolve().parents[3]


class Instance:
    directory = None  # the metrics directory (and the liveness record's)
    record = None  # liveness.Record, in the master
    server_pid = None
    owns_directory = True


instance = Instance()


def prepare(arbiter):
    for problem in (
        settings.metrics and metrics_problem(),
        settings.sentry_dsn and errors.problem(),
        settings.otlp_endpoint and tracing.problem(),
    ):
        if problem:
            sys.exit(problem)
    if settings.log_format == "json":
        logging.captureWarnings(True)  # Python's warnings, as log records: JSON lines too
    instance.owns_directory = not os.environ.get(files.ENVIRONMENT_VARIABLE, "").strip()
    instance.directory = files.prepare()
    instance.record = liveness.Record(instance.directory, arbiter)
    if settings.metrics:
        # Imported once here, now that it will pick its multiprocess mode, so that the
        # workers share its pages instead of each importing its own (2.5 MiB of PSS each).
        import prometheus_client  # noqa: F401


def metrics_problem():
    # Not imported here: prometheus_client picks its multiprocess mode at import, once
    # PROMETHEUS_MULTIPROC_DIR is set (files.prepare).
    if find_spec("prometheus_client") is None:
        return (
            "prometheus_client is not installed: pip install prometheus-client, "
            "or set GUNICORN_METRICS=false"
        )
    return None


def when_ready(arbiter):
    logs.kit_lines_keep_time_and_level(settings.log_format)
    start_server(arbiter)


def start_server(arbiter):
    """Start server.py; a port taken stops gunicorn if METRICS_PORT named it, else warns."""
    cfg = arbiter.cfg
    listeners = [listener.sock.fileno() for listener in arbiter.LISTENERS]
    command = [
        sys.executable, "-m", SERVER_MODULE,
        "--master", str(os.getpid()),
        "--directory", str(instance.directory),
        "--bind", settings.metrics_bind,
        "--port", str(settings.metrics_port),
        "--timeout", str(cfg.timeout),
        "--preset", model_of(cfg.worker_class_str),
        "--listeners", ",".join(map(str, listeners)),
    ]  # fmt: skip
    if not settings.metrics:
        command.append("--no-metrics")
    path = [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    for fd in listeners:
        os.set_inheritable(fd, True)
    try:
        # posix_spawn, not subprocess: the gevent preset patches subprocess, whose child
        # watcher would take SIGCHLD from gunicorn's own reaping.
        instance.server_pid = os.posix_spawn(sys.executable, command, environ)
    finally:
        for fd in listeners:
            os.set_inheritable(fd, False)
    where = f"{settings.metrics_bind}:{settings.metrics_port}"
    if not wait_for_server():
        reason = f"The metrics server did not start on {where} (see above)"
        if "METRICS_PORT" in os.environ:
            sys.exit(f"{reason}: choose a free METRICS_PORT")
        # The default port, taken: another instance on this host, as in development. A
        # container or a pod has it to itself.
        arbiter.log.info("%s: no /metrics or /livez here; set a free METRICS_PORT", reason)
        return
    arbiter.log.info(
        "Metrics on http://%s/metrics, liveness on /livez%s",
        where,
        "" if settings.metrics else " (metrics off: GUNICORN_METRICS=false)",
    )


def wait_for_server():
    """Whether the server listens: its first process exits 0 once it does (server.py)."""
    spawned, instance.server_pid = instance.server_pid, None
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        pid, status = os.waitpid(spawned, os.WNOHANG)
        if pid:
            if os.waitstatus_to_exitcode(status) != 0:
                return False
            pid_file = Path(instance.directory) / SERVER_PID_FILE
            instance.server_pid = int(pid_file.read_text())
            return True
        time.sleep(0.02)
    os.kill(spawned, signal.SIGKILL)
    os.waitpid(spawned, 0)
    return False


def pre_fork(arbiter, worker):
    worker.tmp = liveness.Watched(worker.tmp, instance.record)


def post_fork(arbiter, worker):
    requestid.trust(worker.cfg.forwarded_allow_ips)
    if settings.metrics:
        metrics.worker_metrics = metrics.Worker(worker)
        metrics.tally.recording = True
        worker.tmp.heartbeat = metrics.worker_metrics.heartbeat
        metrics.measure_pool_waits()
    if settings.sentry_dsn:
        errors.start(settings.sentry_dsn)
    if settings.otlp_endpoint:
        tracing.start()


def post_worker_init(worker):
    logs.kit_lines_keep_time_and_level(settings.log_format)
    if settings.otlp_endpoint:
        tracing.instrument_application(worker.app.wsgi())
    if getattr(worker, "asgi", None) is not None:
        from config.gunicorn.observability.asgi import observed

        worker.asgi = observed(worker.asgi)
    else:
        worker.wsgi = requestid.wsgi(worker.wsgi)
    if getattr(worker, "model", None) == "gevent":
        from config.gunicorn.observability import loopwatch

        loopwatch.watch()


def worker_abort(worker):
    worker.kit_exit_reason = "timeout"


def worker_exit(arbiter, worker):
    if metrics.worker_metrics is not None:
        metrics.worker_metrics.exited(exit_reason(worker))
    if settings.otlp_endpoint:
        tracing.stop()
    if settings.sentry_dsn:
        errors.stop()


def exit_reason(worker):
    """Why this worker is ending, as it knows it."""
    if getattr(worker, "kit_exit_reason", None):
        return worker.kit_exit_reason
    if getattr(worker, "recycling", False):  # its memory grew: workers/recycle.py
        return "recycled"
    if worker.alive:
        return "crash"  # it did not decide to stop
    if worker.nr >= worker.max_requests:
        return "max_requests"
    return "shutdown"


def child_exit(arbiter, worker):
    if not settings.metrics or instance.directory is None:
        return
    if not files.retire(instance.directory, worker.pid):
        reason = "timeout" if worker.aborted else "crash"
        files.archive_counter(instance.directory, exits_key(reason))


def exits_key(reason):
    from prometheus_client.mmap_dict import mmap_key

    return mmap_key(
        "gunicorn_worker_exits", "gunicorn_worker_exits_total", ["reason"], [reason],
        metrics.EXITS_HELP,
    )  # fmt: skip


def on_exit(arbiter):
    if instance.server_pid is not None:
        with contextlib.suppress(ProcessLookupError):  # gone already
            os.kill(instance.server_pid, signal.SIGTERM)
    if instance.directory is not None and instance.owns_directory:
        files.remove(instance.directory)
