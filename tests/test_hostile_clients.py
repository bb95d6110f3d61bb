"""Hostile clients and careless timing against the presets, as real processes on raw sockets.

Each test is a defect found by probing the default bake (slow, oversized and malformed
requests, connections held open, a stop right after start, a worker that leaks) and what
every preset does about it now. `nox -s resilience` measures the same cases under load.
"""

import http.client
import itertools
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter

import pytest
from conftest import free_port, raw_request
from test_presets import PRESETS, environment, launcher, project, serve

__all__ = ["project"]  # the module's fixture, shared with test_presets.py

pytestmark = pytest.mark.slow


def port_of(server):
    return int(server.url.rsplit(":", 1)[1])


def exchange_until_closed(port, request):
    """Send `request` on a new connection; (what came back, how it ended)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        return read_until_closed(sock, timeout=10)


def read_until_closed(sock, timeout):
    """All the server sends until it closes; 'reset' if it resets the connection instead."""
    sock.settimeout(timeout)
    received = b""
    try:
        while data := sock.recv(65536):
            received += data
    except ConnectionResetError:
        return received, "reset"
    except TimeoutError:
        return received, "open"
    return received, "closed"


@pytest.mark.parametrize("preset", PRESETS)
def test_a_chunked_body_stops_at_the_limit(project, running_server, preset):
    # asgi spooled 300 MB of chunks to /tmp and answered 405 after the last; gevent read
    # 200 MB after answering 405.
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    with serve(running_server, project, launcher(project), GUNICORN_PRESET=preset) as server:
        status, head = raw_request(
            port_of(server),
            b"POST /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            [chunk] * 320,  # 20 MiB, twice GUNICORN_MAX_REQUEST_BODY
        )
    assert status == 413, head
    assert "Connection: close" in head or preset == "asgi", head


@pytest.mark.parametrize("preset", PRESETS)
def test_a_large_body_is_refused_before_100_continue(project, running_server, preset):
    with serve(running_server, project, launcher(project), GUNICORN_PRESET=preset) as server:
        answer = exchange_until_closed(
            port_of(server),
            b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 50000000\r\n"
            b"Expect: 100-continue\r\n\r\n",
        )[0]
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"100 Continue" not in answer


@pytest.mark.parametrize("preset", PRESETS)
def test_slow_heads_and_bodies_end_in_10_s_with_one_line_each(project, running_server, preset):
    # sync killed its worker after 30 s (a 500, a traceback); gthread had no bound on a body.
    with serve(running_server, project, launcher(project), GUNICORN_PRESET=preset) as server:
        port = port_of(server)
        with (
            socket.create_connection(("127.0.0.1", port)) as slow_head,
            socket.create_connection(("127.0.0.1", port)) as slow_body,
        ):
            slow_head.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            slow_body.sendall(b"POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nx")
            started = time.monotonic()
            head_answer, head_end = read_until_closed(slow_head, timeout=20)
            body_answer, body_end = read_until_closed(slow_body, timeout=20)
            waited = time.monotonic() - started
        assert server.get("/healthz")[0] == 200
        log = server.log
    assert (head_answer, head_end) == (b"", "closed")
    assert body_answer.startswith(b"HTTP/1.1 408 "), body_answer
    assert body_end == "closed"
    assert waited < 15
    assert log.count("no complete request head within 10 s") == 1, log
    assert log.count("408 Request Timeout to 127.0.0.1") == 1, log
    assert "Traceback" not in log and "SIGKILL" not in log, log


@pytest.mark.parametrize("preset", PRESETS)
def test_an_answer_before_the_body_is_read_not_reset(project, running_server, preset):
    # gevent reset a `Connection: close` POST of 1 MB after its 405 (5 of 5), and a 414.
    with serve(running_server, project, launcher(project), GUNICORN_PRESET=preset) as server:
        port = port_of(server)
        outcomes = []
        for request, body in [
            (b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", b""),
            (
                b"POST /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                b"Content-Length: 1000000\r\n\r\n",
                b"x" * 1_000_000,
            ),
        ] * 3:
            answer, end = exchange_until_closed(port, request + body)
            outcomes.append((answer.split(b"\r\n", 1)[0], end))
    assert (
        outcomes
        == [
            (b"HTTP/1.1 414 URI Too Long", "closed"),
            (b"HTTP/1.1 405 Method Not Allowed", "closed"),
        ]
        * 3
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_no_host_or_an_unknown_version_is_a_400(project, running_server, preset):
    with serve(running_server, project, launcher(project), GUNICORN_PRESET=preset) as server:
        port = port_of(server)
        without_host = raw_request(port, b"GET /healthz HTTP/1.1\r\n\r\n")[0]
        version = raw_request(port, b"GET /healthz HTTP/1.7\r\nHost: a\r\n\r\n")[1]
        http_1_0 = raw_request(port, b"GET /healthz HTTP/1.0\r\n\r\n")[0]
    assert without_host == 400
    assert version.startswith("HTTP/1.1 400 "), version  # was "HTTP/1.7 200 OK"
    assert http_1_0 == 200


@pytest.mark.parametrize("preset", PRESETS)
def test_script_name_from_a_trusted_proxy_is_not_believed(project, running_server, preset):
    env = {"GUNICORN_PRESET": preset, "DJANGO_SECURE_SSL_REDIRECT": "false"}
    with serve(running_server, project, launcher(project), **env) as server:
        head = raw_request(
            port_of(server),
            b"GET /admin/ HTTP/1.1\r\nHost: 127.0.0.1\r\nSCRIPT_NAME: /evilprefix\r\n"
            b"Connection: close\r\n\r\n",
        )[1]
    assert head.startswith("HTTP/1.1 302 "), head
    location = re.search(r"(?im)^location: (.*)$", head).group(1).strip()
    assert location.startswith("/admin/login/"), head


def test_gevent_answers_probes_with_every_connection_held(project, running_server):
    # 2,100 connections, each a request and then part of the next, held up to the 75 s
    # keep-alive, made every /healthz wait 30 s. Here, at a smaller scale: 1 worker, 50
    # connections, 80 held.
    env = {"GUNICORN_PRESET": "gevent", "WEB_CONCURRENCY": "1", "GUNICORN_WORKER_CONNECTIONS": "50"}
    with serve(running_server, project, launcher(project), **env) as server:
        port = port_of(server)
        held = []
        try:
            for _ in range(80):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HT")
                held.append(sock)
            time.sleep(0.5)
            started = time.monotonic()
            probe = raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")[0]
            probe_s = time.monotonic() - started
            other = raw_request(port, b"GET /admin/ HTTP/1.1\r\nHost: a\r\n\r\n")[1]
            ends = [read_until_closed(sock, timeout=15)[1] for sock in held[:5]]
            after = raw_request(port, b"GET /admin/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")[0]
        finally:
            for sock in held:
                sock.close()
    assert probe == 200 and probe_s < 2
    assert other.startswith("HTTP/1.1 503 "), other  # shed while the worker is full
    assert ends == ["closed"] * 5  # partial heads get 10 s, not the keep-alive's 75
    assert after in (301, 302)  # served again once they are gone


def open_files_limit(soft, hard):
    """A command prefix that runs the server with these limits of open files, as a shell does."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    return ["prlimit", f"--nofile={soft}:{hard}"]


def test_gevent_serves_1100_kept_alive_clients_on_one_worker_started_at_1024_files(
    project, running_server
):
    # Started from a shell or a systemd unit (a soft limit of 1,024 open files), a worker
    # could not accept a connection past its 1,024th file; and it asked each socket whether
    # a request had come with select(), which refuses a descriptor over 1023: every request
    # on one failed, and a load test's higher steps saw thousands of errors.
    clients, server_files = 1100, 4096
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < server_files:
        pytest.skip(f"the hard limit of open files is {hard}, under the {server_files} needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, clients + 200), hard))
    env = {"GUNICORN_PRESET": "gevent", "WEB_CONCURRENCY": "1"}
    env["GUNICORN_WORKER_CONNECTIONS"] = "1200"  # none of them idle long enough to be closed
    command = open_files_limit(1024, server_files) + launcher(project)
    try:
        with serve(running_server, project, command, **env) as server:
            port = port_of(server)
            connections = [
                http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(clients)
            ]
            statuses = []
            try:
                for _ in range(2):  # the second request on each waits as an idle connection
                    for connection in connections:
                        connection.request("GET", "/healthz")
                        response = connection.getresponse()
                        response.read()
                        statuses.append(response.status)
            finally:
                for connection in connections:
                    connection.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert statuses == [200] * 2 * clients, Counter(statuses)
    assert "Traceback" not in server.log and "Open files" not in server.log, server.log[-3000:]


def test_a_hard_limit_of_open_files_too_low_for_the_connections_is_one_warning(
    project, running_server
):
    env = {"GUNICORN_PRESET": "gevent", "WEB_CONCURRENCY": "1"}
    command = open_files_limit(1024, 1024) + launcher(project)
    with serve(running_server, project, command, **env) as server:
        assert server.get("/healthz")[0] == 200
    warnings = [line for line in server.log.splitlines() if "Open files" in line]
    assert len(warnings) == 1, server.log[-3000:]
    assert "2,000 connections" in warnings[0] and "1,024" in warnings[0], warnings


def test_asgi_logs_clients_that_left_as_499s_and_stops_cleanly_right_after(project, running_server):
    # gunicorn logged a client that left before its answer as "500 0"; and a SIGTERM right
    # after clients left (wrk ending) cancelled their requests as the worker exited, with
    # Django's "Task exception was never retrieved" tracebacks in CI.
    env = {"GUNICORN_PRESET": "asgi", "WEB_CONCURRENCY": "1", "DJANGO_DEMO_ENDPOINTS": "true"}
    request = b"GET /demo/io-async?ms=3000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with serve(running_server, project, launcher(project), **env) as server:
        clients = [socket.create_connection(("127.0.0.1", port_of(server))) for _ in range(20)]
        for client in clients:
            client.sendall(request)
        time.sleep(0.5)  # their views run
        for client in clients:
            client.close()
    log = server.log
    lines = [line for line in log.splitlines() if "GET /demo/io-async" in line]
    assert lines and all('HTTP/1.1" 499 ' in line for line in lines), log[-3000:]
    assert "Traceback" not in log and "never retrieved" not in log, log[-3000:]
    assert server.returncode == 0, log[-3000:]


@pytest.mark.parametrize("preset", PRESETS)
def test_a_stop_during_boot_stops_the_master_within_5_s(project, preset):
    # A SIGTERM while the master forked its workers left one running until graceful_timeout:
    # 25.2 s. Here, 10 starts of each preset (40 in all, 3 s each), each stopped 0 to 300 ms
    # after the master listens, while its 4 workers are forked.
    env = environment(project, GUNICORN_PRESET=preset, WEB_CONCURRENCY="4", PORT=str(free_port()))
    slowest = 0.0
    for _ in range(10):
        server = subprocess.Popen(
            launcher(project),
            cwd=project.path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            for line in server.stdout:
                if "Listening at:" in line:
                    break
            threading.Thread(target=server.stdout.read, daemon=True).start()
            time.sleep(random.uniform(0, 0.3))
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            returncode = server.wait(timeout=30)
            slowest = max(slowest, time.monotonic() - signalled)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        assert returncode == 0
    assert slowest < 5


class KeptAliveClients:
    """Threads, each sending GETs one after another on a kept-alive connection, counting."""

    def __init__(self, port, path, clients):
        self.port, self.path = port, path
        self.answered = 0
        self.failures = []
        self.running = True
        self.threads = [threading.Thread(target=self.client) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def client(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while self.running:
            try:
                connection.request("GET", self.path)
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    self.answered += 1
                else:
                    self.failures.append(response.status)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                connection.close()
        connection.close()

    def stop(self):
        self.running = False
        for thread in self.threads:
            thread.join(timeout=15)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_leaking_worker_is_replaced_one_at_a_time_with_no_request_lost(
    project, running_server, preset
):
    env = {
        "GUNICORN_PRESET": preset,
        "WEB_CONCURRENCY": "2",
        "DJANGO_DEMO_ENDPOINTS": "true",
        "GUNICORN_RECYCLE_GROWTH_MIB": "32",  # 512 requests of 64 KiB past the warm-up
        "GUNICORN_RECYCLE_INTERVAL": "1",
    }
    with serve(running_server, project, launcher(project), **env) as server:
        clients = KeptAliveClients(port_of(server), "/demo/leak?kb=64", clients=8)
        deadline = time.monotonic() + 90
        try:
            while server.log.count("Replacing worker") < 3 and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            clients.stop()
        log = server.log
    assert clients.failures == [], clients.failures[:10]
    assert clients.answered > 2000
    replacements = re.findall(r"\[(\d+)\] \[INFO\] Replacing worker \d+: RSS", log)
    assert len(replacements) >= 3, log[-3000:]
    # One at a time: each replaced worker has exited before the next one is replaced.
    for pid, next_pid in itertools.pairwise(replacements):
        exited = log.index(f"Worker exiting (pid: {pid})")
        assert exited < log.index(f"[{next_pid}] [INFO] Replacing worker"), log[-3000:]
