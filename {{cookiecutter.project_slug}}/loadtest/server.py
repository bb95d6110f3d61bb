"""Start a gunicorn preset (or the baseline) as a real process, wait until it serves, stop it.

One way to start every server the load test measures: `python -m config.gunicorn`,
as the Dockerfile and Procfile do, bound to 127.0.0.1 only.
The baseline is plain `gunicorn config.wsgi:application`: gunicorn's defaults
(one sync worker), what a service gets without a preset.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import processes

PROJECT_DIR = Path(__file__).resolve().parent.parent
PRESETS = ("sync", "gthread", "gevent", "asgi")
BASELINE = "baseline"
# Variables gunicorn reads itself: the baseline runs with gunicorn's defaults, whatever the shell.
GUNICORN_OWN_VARIABLES = ("WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")
READY_TIMEOUT = 60.0

# Production settings, plus what a load test on this machine needs.
SERVER_ENVIRONMENT = {
    "DJANGO_DEBUG": "false",
{%- if cookiecutter.include_demo_endpoints %}
    "DJANGO_DEMO_ENDPOINTS": "true",
{%- endif %}
    # Plain HTTP on 127.0.0.1: no TLS proxy in front to redirect to.
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
}


class ServerError(RuntimeError):
    """The server did not start; str() is one line saying why."""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(preset, port):
    """The command line that serves `preset` on 127.0.0.1:`port`."""
    bind = ["--bind", f"127.0.0.1:{port}"]
    if preset == BASELINE:
        gunicorn = shutil.which("gunicorn", path=Path(sys.executable).parent) or "gunicorn"
        return [gunicorn, "config.wsgi:application", *bind]
    return [sys.executable, "-m", "config.gunicorn", *bind]


def application_name(preset, port):
    """The server's name in pg_stat_activity (libpq reads PGAPPNAME), to count its connections."""
    return f"loadtest-{preset}-{port}"


def environment(preset, port, extra=None):
    env = {
        **os.environ,
        **SERVER_ENVIRONMENT,
        "PORT": str(port),
        "PGAPPNAME": application_name(preset, port),
        **(extra or {}),
    }
    if preset == BASELINE:
        for name in GUNICORN_OWN_VARIABLES:
            env.pop(name, None)
    else:
        env["GUNICORN_PRESET"] = preset
    return env


@dataclass
class Server:
    preset: str
    port: int
    process: object  # subprocess.Popen of the gunicorn master
    log_path: Path

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def application_name(self):
        return application_name(self.preset, self.port)

    @property
    def log(self):
        return self.log_path.read_text(errors="replace")

    def startup_line(self):
        """The line in which a preset's master logs its effective configuration, if any."""
        match = re.search(r"\] (Preset \w+: .*)", self.log)
        return match.group(1) if match else None


def wait_until_ready(server, timeout=READY_TIMEOUT):
    """Until /readyz answers 200; ServerError with the log's last line if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(last_line(server.log) or f"exited with {server.process.returncode}")
        try:
            with urllib.request.urlopen(f"{server.url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise ServerError(f"/readyz did not answer 200 within {timeout:.0f} s: {last_line(server.log)}")


def last_line(log):
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else ""


@contextmanager
def running_server(preset, log_path, cpus=None, extra_env=None):
    """Yield a Server for `preset` on a free local port once it is ready; stop it afterwards."""
    port = free_port()
    with (
        open(log_path, "w") as log,
        processes.running(
            command(preset, port),
            env=environment(preset, port, extra_env),
            cwd=PROJECT_DIR,
            cpus=cpus,
            stdout=log,
            grace=40.0,  # gunicorn's graceful_timeout is 25 s
        ) as process,
    ):
        server = Server(preset, port, process, Path(log_path))
        wait_until_ready(server)
        yield server


def print_config(preset, cpus=None, extra_env=None):
    """gunicorn's effective settings for `preset`, as `gunicorn --print-config` prints them."""
    port = free_port()
    process = processes.start(
        [*command(preset, port), "--print-config"],
        env=environment(preset, port, extra_env),
        cwd=PROJECT_DIR,
        cpus=cpus,
        stdout=subprocess.PIPE,
    )
    output = process.communicate(timeout=60)[0].decode(errors="replace")
    if process.returncode != 0:
        raise ServerError(last_line(output) or f"--print-config exited with {process.returncode}")
    return dict(re.findall(r"^(\w+)\s+= (.*)$", output, flags=re.MULTILINE))
