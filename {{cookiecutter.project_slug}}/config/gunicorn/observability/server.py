"""The instance's metrics and liveness server: a process of its own, started by the master.

    GET /metrics   every worker's metrics summed (prometheus_client's multiprocess
                   collector over the instance's directory: files.py), and what
                   only the instance knows: saturation, the listen backlog, the
                   workers' heartbeats
    GET /livez     200 while the master's loop turns and a worker has beaten within
                   gunicorn's timeout, else 503 (liveness.py)

Not in the master, whose loop must not wait on a slow scraper (nor fork workers
while a thread of it holds a lock), and not in the workers, which are busy exactly
when the numbers matter: a process of its own answers in milliseconds while every
worker slot is taken (tests/test_observability.py checks under 1 s). It imports
neither Django nor the application (20 MiB), and exits when the master does.

Run by hooks.py as `python -m config.gunicorn.observability.server`, with the
listening sockets' file descriptors passed down, so it can read their backlog. Once
it listens it forks and its first process exits (status 0; 1 if it could not
listen): the server is not one of the master's children, which gunicorn's hooks
and operators' tools count as workers.
"""

import argparse
import os
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from config.gunicorn.observability import files, liveness

TEXT = "text/plain; charset=utf-8"
PID_FILE = "server.pid"
# struct tcp_info (linux/tcp.h): 8 bytes, then 32-bit fields; on a listening socket
# tcpi_unacked is the accept queue's length, tcpi_sacked its limit (gunicorn's
# sock.get_backlog() reads the first).
TCP_INFO = struct.Struct("8B24I")
UNACKED, SACKED = 12, 13


def listen_backlog(sockets):
    """(connections waiting to be accepted, the queue's limit) over `sockets`, or None."""
    if not hasattr(socket, "TCP_INFO"):
        return None  # Linux only
    waiting = limit = 0
    found = False
    for sock in sockets:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            info = TCP_INFO.unpack(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104))
        except OSError:
            continue
        waiting += info[UNACKED]
        limit += info[SACKED]
        found = True
    return (waiting, limit) if found else None


class InstanceCollector:
    """The workers' metrics, and the instance's own figures computed at each scrape."""

    def __init__(self, directory, sockets, timeout, preset, metrics):
        self.directory = directory
        self.sockets = sockets
        self.timeout = timeout
        self.preset = preset
        self.metrics = metrics

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        from prometheus_client.multiprocess import MultiProcessCollector

        families = []
        if self.metrics:
            with files.locked(self.directory, exclusive=False):
                families = list(MultiProcessCollector.merge(files.recorded(self.directory)))
        yield from families
        info = GaugeMetricFamily(
            "gunicorn_preset_info", "The preset this instance runs", labels=["preset"]
        )
        info.add_metric([self.preset], 1)
        yield info
        sums = {family.name: sum(s.value for s in family.samples) for family in families}
        if sums.get("gunicorn_slots"):
            yield GaugeMetricFamily(
                "gunicorn_saturation",
                "Busy slots / slots over the instance's workers (sync workers, gthread "
                "threads, gevent connections, asgi requests per worker_connections)",
                value=sums.get("gunicorn_slots_busy", 0) / sums["gunicorn_slots"],
            )
        backlog = listen_backlog(self.sockets)
        if backlog is not None:
            yield GaugeMetricFamily(
                "gunicorn_listen_backlog",
                "Connections the kernel accepted that no worker has taken yet",
                value=backlog[0],
            )
            yield GaugeMetricFamily(
                "gunicorn_listen_backlog_limit", "The listen queue's length", value=backlog[1]
            )
        ages = liveness.ages(self.directory)
        if ages is not None:
            master_age, beat_age, workers = ages
            yield GaugeMetricFamily("gunicorn_workers", "Workers the master runs", value=workers)
            yield GaugeMetricFamily(
                "gunicorn_heartbeat_age_seconds",
                "Seconds since the newest heartbeat of any worker (liveness fails past timeout)",
                value=beat_age,
            )
            yield GaugeMetricFamily(
                "gunicorn_master_loop_age_seconds",
                "Seconds since the master last read its workers' heartbeats",
                value=master_age,
            )


def handler_class(collector, registry, timeout):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class Handler(BaseHTTPRequestHandler):
        server_version = "gunicorn-metrics"

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self.answer(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/livez":
                alive, why = liveness.verdict(collector.directory, timeout)
                self.answer(200 if alive else 503, TEXT, f"{'ok' if alive else 'dead'}: {why}\n")
            else:
                self.answer(404, TEXT, "not found: /metrics or /livez\n")

        def answer(self, status, content_type, body):
            body = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass  # a scrape every 15 s is not news; errors still reach stderr

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    timeout = 5  # a scraper that sends nothing for this long is dropped


def arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", type=int, required=True)
    parser.add_argument("--directory", required=True)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--listeners", default="")
    parser.add_argument("--no-metrics", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    options = arguments(argv)
    from prometheus_client import CollectorRegistry

    sockets = [socket.socket(fileno=int(fd)) for fd in options.listeners.split(",") if fd.strip()]
    collector = InstanceCollector(
        options.directory, sockets, options.timeout, options.preset, not options.no_metrics
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    family = socket.AF_INET6 if ":" in options.bind else socket.AF_INET
    Server.address_family = family
    try:
        server = Server(
            (options.bind, options.port), handler_class(collector, registry, options.timeout)
        )
    except OSError as exc:
        sys.exit(
            f"metrics server: cannot listen on {options.bind}:{options.port} "
            f"(METRICS_BIND, METRICS_PORT): {exc.strerror}"
        )
    # Listening: now leave the master's children, which its hooks and tools count as its
    # workers. The master waits for this process, and reads the server's pid from the file.
    child = os.fork()
    if child:
        (Path(options.directory) / PID_FILE).write_text(str(child))
        os._exit(0)
    threading.Thread(target=watch_master, args=(options.master, server), daemon=True).start()
    server.serve_forever(poll_interval=0.5)


def watch_master(pid, server):
    """Exit with the master: it may have been killed (-9) and never said so."""
    while files.alive(pid):
        threading.Event().wait(1.0)
    server.shutdown()


if __name__ == "__main__":
    main()
