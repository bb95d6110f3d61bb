"""deploy/nginx in front of every gunicorn preset: real Debian nginx, real gunicorn.

gunicorn expects a buffering proxy in front. Without one, measured on 2 CPUs: 5 connections
sending their request head a byte at a time stop the sync preset serving anyone, /healthz
included; 24 do the same to gthread. Here each preset runs behind nginx with the project's
own deploy/nginx files, changed only where they say where to listen and where gunicorn is,
while a slowloris holds 30 connections (more than sync's 16 workers at most, and than
gthread's 24 threads on 2 CPUs): /healthz must still answer at once. The same slowloris
straight at sync is the control that stalls it, so the test can fail. Then nginx's own
limits: 413 over 10 MiB without gunicorn seeing the request, and the 10 s timeouts; and
at the limit, a body the application never reads gets the application's answer, not a 502.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import free_port, raw_request
from test_presets import environment

NGINX = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")

pytestmark = pytest.mark.slow

PRESETS = ("sync", "gthread", "gevent", "asgi")
MIB = 2**20
BODY_LIMIT = 10 * MIB  # client_max_body_size 10m
REPEATS = 10  # of a request that failed at random (with a 502) before it was fixed
SLOW_CONNECTIONS = 30
SLOW_INTERVAL = 1.0  # seconds between two bytes of each slow request head
# A request through nginx answers in milliseconds here; this leaves room for a busy machine.
FAST = 2.0
# What the control waits before calling /healthz stalled: a slowloris holds sync's workers
# for gunicorn's 30 s timeout, an idle sync preset answers in milliseconds.
STALLED = 3.0
# What loadtest/server.py sets: production settings, plain HTTP, the demo endpoints on.
SERVER_ENVIRONMENT = {
    "DJANGO_DEBUG": "false",
    "DJANGO_DEMO_ENDPOINTS": "true",
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
}

# What the official nginx image's /etc/nginx/nginx.conf does around conf.d/, with a prefix of
# our own for everything nginx writes. Root's workers: pytest's temporary folders are 0700,
# and workers running as nobody could not write request bodies there.
MAIN_CONFIG = """\
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 1024;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include conf.d/*.conf;
}}
"""


@pytest.fixture(scope="module")
def project(installed_project):
    return installed_project()


@pytest.fixture
def gunicorn(running_server, project, module_database):
    """Context manager factory: `preset` served on 127.0.0.1, as loadtest/server.py starts it."""

    def start(preset):
        port = free_port()
        args = [project.bin("python"), "-m", "config.gunicorn", "--bind", f"127.0.0.1:{port}"]
        env = environment(
            project,
            PORT=str(port),
            GUNICORN_PRESET=preset,
            DATABASE_URL=module_database,
            **SERVER_ENVIRONMENT,
        )
        return running_server(args, cwd=project.path, env=env, port=port)

    return start


def port_of(server):
    return int(server.url.rsplit(":", 1)[1])


def deploy_file(project, name, old, new):
    """The baked project's deploy/nginx/`name`, its one line `old` replaced by `new`."""
    text = (project.path / "deploy" / "nginx" / name).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"deploy/nginx/{name} no longer has exactly one {old!r}"
    return text.replace(old, new)


@dataclass
class Nginx:
    port: int
    prefix: Path

    def log(self, name):
        path = self.prefix / name
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def nginx(tmp_path, project):
    """Context manager factory: nginx with deploy/nginx in front of 127.0.0.1:`upstream_port`.

    The deploy files are copied unchanged but for the listen address and the upstream
    server; nginx runs in the foreground in a temporary prefix, and is stopped (killed
    if need be) whatever the test's outcome.
    """
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")

    @contextmanager
    def start(upstream_port):
        port = free_port()
        prefix = tmp_path / f"nginx-{port}"
        (prefix / "conf.d").mkdir(parents=True)
        (prefix / "conf.d" / "default.conf").write_text(
            deploy_file(project, "default.conf", "listen 8080;", f"listen 127.0.0.1:{port};")
        )
        (prefix / "conf.d" / "upstream.conf").write_text(
            deploy_file(
                project, "upstream.conf", "server web:8000;", f"server 127.0.0.1:{upstream_port};"
            )
        )
        user = "user root;" if os.geteuid() == 0 else ""
        (prefix / "nginx.conf").write_text(MAIN_CONFIG.format(user=user, prefix=prefix))
        with (prefix / "stderr.log").open("w") as output:
            process = subprocess.Popen(
                [NGINX, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Nginx(port, prefix)
        try:
            deadline = time.monotonic() + 10
            while True:
                if process.poll() is not None:
                    pytest.fail(
                        f"nginx exited with {process.returncode}:\n"
                        f"{server.log('stderr.log')}{server.log('error.log')}"
                    )
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"nginx did not listen in 10 s:\n{server.log('error.log')}")
                    time.sleep(0.05)
            yield server
        finally:
            if process.poll() is None:
                process.terminate()  # SIGTERM: nginx's fast shutdown, workers included
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    return start


class Slowloris:
    """`count` connections that send a request head one byte every `interval` seconds.

    The head is long enough never to end while a test runs. Connections the kernel has
    queued but the server not yet accepted take their bytes too.
    """

    HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slowloris: " + b"x" * 1000

    def __init__(self, port, count=SLOW_CONNECTIONS, interval=SLOW_INTERVAL):
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setblocking(False)  # a peek that finds nothing must not wait
            self.sockets.append(sock)
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.drip, daemon=True)

    def drip(self):
        for offset in range(len(self.HEAD)):
            for sock in self.sockets:
                # OSError: closed by the server (a byte a second never fills a buffer).
                with suppress(OSError):
                    sock.send(self.HEAD[offset : offset + 1])
            if self.stopped.wait(self.interval):
                return

    def open_count(self):
        """How many of the connections the server has not closed."""
        count = 0
        for sock in self.sockets:
            try:
                if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                    continue  # the server answered: it read a whole request, which it cannot
            except BlockingIOError:
                count += 1  # nothing to read, and no end of stream: still open
            except OSError:
                pass  # reset
        return count

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopped.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


def healthz(port, timeout):
    """(status, seconds) of GET /healthz on a new connection; status None if it timed out."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    except TimeoutError:
        return None, time.monotonic() - started
    finally:
        connection.close()


def post_head(size=None):
    length = f"Content-Length: {size}" if size is not None else "Transfer-Encoding: chunked"
    return f"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{length}\r\n\r\n".encode()


def chunked(total, size=MIB):
    """`total` bytes as HTTP/1.1 chunks of `size`, then the last chunk."""
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        yield f"{part:x}\r\n".encode() + b"x" * part + b"\r\n"
        sent += part
    yield b"0\r\n\r\n"


def wait_for(predicate, timeout=5):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
    return predicate()


def test_compose_runs_these_files_in_front_of_web(project):
    """What the tests change in deploy/nginx is what compose sets: the port and `web`."""
    services = yaml.safe_load((project.path / "compose.yaml").read_text())["services"]
    proxy = services["proxy"]
    assert "./deploy/nginx:/etc/nginx/conf.d:ro" in proxy["volumes"]
    assert "web" in proxy["depends_on"]
    assert "127.0.0.1:8080:8080" in proxy["ports"]
    assert "127.0.0.1:8000:8000" in services["web"]["ports"]  # gunicorn's PORT in the image
    # The official image includes conf.d/*.conf: these two, and nothing else of ours.
    files = sorted(path.name for path in (project.path / "deploy" / "nginx").iterdir())
    assert files == ["default.conf", "upstream.conf"]


@pytest.mark.parametrize("preset", PRESETS)
def test_behind_nginx_healthz_answers_through_a_slowloris(gunicorn, nginx, preset):
    with (
        gunicorn(preset) as server,
        nginx(port_of(server)) as front,
        Slowloris(front.port) as slowloris,
    ):
        time.sleep(1.5)  # every connection accepted, and a byte or two in
        answers = []
        for _ in range(5):
            answers.append(healthz(front.port, timeout=10))
            time.sleep(0.5)
        still_open = slowloris.open_count()
    print(f"{preset} behind nginx, slowloris of {SLOW_CONNECTIONS}: /healthz {answers}")
    assert all(status == 200 for status, _ in answers), answers
    assert max(seconds for _, seconds in answers) < FAST, answers
    # Every slow connection was still open, waiting in nginx for its head to end.
    assert still_open == SLOW_CONNECTIONS


def test_control_the_same_slowloris_straight_at_sync_stalls_healthz(gunicorn):
    with gunicorn("sync") as server:
        port = port_of(server)
        before = healthz(port, timeout=10)
        with Slowloris(port):
            time.sleep(1.5)
            during = healthz(port, timeout=STALLED)
        # The slow connections closed, the workers are free again.
        after = healthz(port, timeout=10)
    print(f"sync without nginx: /healthz before {before}, during {during}, after {after}")
    assert before[0] == 200
    assert during[0] is None, f"sync answered {during} through a slowloris: no stall to prevent"
    assert after[0] == 200, server.log


def test_a_body_over_10_mib_gets_413_from_nginx_and_never_reaches_gunicorn(gunicorn, nginx):
    with gunicorn("sync") as server, nginx(port_of(server)) as front:
        # Announced: refused on the head alone, before a byte of body is sent.
        declared = raw_request(front.port, post_head(BODY_LIMIT + 1))
        # Not announced (chunked): refused once what arrived passes the limit.
        streamed = raw_request(front.port, post_head(), chunked(BODY_LIMIT + 1))
        error_log = front.log("error.log")
    assert declared[0] == 413, declared
    assert streamed[0] == 413, streamed
    assert "Server: nginx" in declared[1]
    assert "POST /healthz" not in server.log, server.log
    assert f"client intended to send too large body: {BODY_LIMIT + 1} bytes" in error_log
    assert "client intended to send too large chunked body" in error_log


@pytest.mark.parametrize("preset", PRESETS)
def test_a_body_at_the_limit_the_application_never_reads_gets_its_answer_not_a_502(
    gunicorn, nginx, preset
):
    """The probe refuses POST with a 405 without reading the body. Closing with the body
    unread reset the connection while nginx was still sending it: nginx answered 502 to 21
    of 30 such requests to sync before the workers read what the application left."""
    with gunicorn(preset) as server, nginx(port_of(server)) as front:
        statuses = [
            raw_request(front.port, post_head(BODY_LIMIT), [b"x" * BODY_LIMIT])[0]
            for _ in range(REPEATS)
        ]
        assert wait_for(lambda: server.log.count("POST /healthz") == REPEATS), server.log
        error_log = front.log("error.log")
    print(f"{preset}, {REPEATS} POSTs of 10 MiB through nginx: {statuses}")
    assert statuses == [405] * REPEATS, error_log[-2000:]
    assert server.log.count('"POST /healthz HTTP/1.1" 405') == REPEATS, server.log


def test_nginx_drops_slow_heads_and_slow_bodies_after_10_s(nginx):
    # Nothing behind it: neither request is ever complete enough to be passed on.
    with nginx(free_port()) as front:
        started = time.monotonic()
        slow_body = socket.create_connection(("127.0.0.1", front.port), timeout=5)
        slow_body.sendall(post_head(1000) + b"x" * 10)  # then nothing
        slow_body.setblocking(False)
        closed = {}
        with Slowloris(front.port, count=1) as slow_head:
            while len(closed) < 2 and time.monotonic() - started < 20:
                if "head" not in closed and slow_head.open_count() == 0:
                    closed["head"] = time.monotonic() - started
                try:
                    if "body" not in closed and not slow_body.recv(1):
                        closed["body"] = time.monotonic() - started
                except BlockingIOError:
                    pass
                time.sleep(0.1)
        slow_body.close()
        access_log = front.log("access.log")
    print(f"nginx closed the slow head and the slow body after {closed} s")
    assert 9 < closed.get("head", 99) < 15, closed
    assert 9 < closed.get("body", 99) < 15, closed
    assert access_log.count('" 408 ') == 2, access_log
