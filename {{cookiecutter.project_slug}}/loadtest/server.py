"""Start a server the load test measures as a real process, wait until it serves, stop it.

Every row of the report is one server, bound to 127.0.0.1 only:

- a preset (sync, gthread, gevent, asgi): `python -m config.gunicorn`, as the
  Dockerfile and Procfile start it;
- baseline: plain `gunicorn config.wsgi:application`, gunicorn's defaults (one
  sync worker): what a service gets without a preset;
- stock-<preset>: the preset's worker class and worker count (and threads, for
  gthread), gunicorn's defaults otherwise, e.g. `gunicorn -k gevent -w 2
  config.wsgi:application`: what the preset adds, or costs, over stock gunicorn;
- granian: `granian --interface wsgi`, a server written in Rust, sized like the
  gthread preset (its workers, its threads as blocking threads): what the fastest
  Python server gives on this machine (the `granian` extra).

`--presets stock` adds the stock row of each preset asked for (of all four if none is).
"""

import importlib.util
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
STOCK = "stock"
GRANIAN = "granian"
COMPARISONS = (BASELINE, STOCK, GRANIAN)  # rows that show what the presets are worth
STOCK_PREFIX = f"{STOCK}-"
# Variables the servers read themselves: the comparison rows run with their own defaults,
# whatever the shell exports.
OWN_VARIABLES = ("WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")
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


def granian_installed():
    return importlib.util.find_spec("granian") is not None


def servers(selected):
    """The rows to run for the --presets `selected`, in order: each stock row after its preset."""
    presets = [name for name in selected if name in PRESETS]
    rows = []
    for preset in presets or (PRESETS if STOCK in selected else ()):
        if preset in selected:
            rows.append(preset)
        if STOCK in selected:
            rows.append(STOCK_PREFIX + preset)
    return rows + [name for name in (BASELINE, GRANIAN) if name in selected]


def stock_of(row):
    """The preset a stock row copies the sizing of; None for any other row."""
    return row.removeprefix(STOCK_PREFIX) if row.startswith(STOCK_PREFIX) else None


def sized_like(row):
    """The preset whose sizing (from --print-config) the row needs, if any."""
    return stock_of(row) or ("gthread" if row == GRANIAN else row if row in PRESETS else None)


def executable(name):
    """`name` installed next to this Python, else the first one on PATH."""
    return shutil.which(name, path=Path(sys.executable).parent) or shutil.which(name) or name


def command(row, port, sizing=None):
    """The command line that serves `row` on 127.0.0.1:`port` (None: no address, to show it).

    `sizing` (sizing.Sizing): the workers and threads of the stock and granian rows. Plain
    gunicorn runs without its control socket, whose default path ($HOME/.gunicorn/gunicorn.ctl)
    is shared by every gunicorn of the user: the first to stop would delete another's.
    It serves no request, so the rows still measure gunicorn's defaults.
    """
    bind = ["--bind", f"127.0.0.1:{port}"] if port else []
    plain = [*bind, "--no-control-socket"] if port else []  # plain gunicorn's
    if row == BASELINE:
        return [executable("gunicorn"), "config.wsgi:application", *plain]
    if row == GRANIAN:
        address = ["--host", "127.0.0.1", "--port", str(port)] if port else []
        return [
            executable("granian"),
            *("--interface", "wsgi", *address),
            *("--workers", str(sizing.workers), "--blocking-threads", str(sizing.threads)),
            "config.wsgi:application",
        ]
    if stock_of(row):
        model = sizing.worker_class
        threads = ["--threads", str(sizing.threads)] if model == "gthread" else []
        application = "config.asgi:application" if model == "asgi" else "config.wsgi:application"
        workers = ["-k", model, "-w", str(sizing.workers), *threads]
        return [executable("gunicorn"), *workers, application, *plain]
    return [sys.executable, "-m", "config.gunicorn", *bind]


def shown_command(row, sizing=None):
    """The command of `row` as a person types it: `gunicorn -k gevent -w 2 config.wsgi:...`."""
    if row in PRESETS:
        return f"GUNICORN_PRESET={row} python -m config.gunicorn"
    program, *args = command(row, None, sizing)
    return " ".join([Path(program).name, *args])


def application_name(row, port):
    """The server's name in pg_stat_activity (libpq reads PGAPPNAME), to count its connections."""
    return f"loadtest-{row}-{port}"


def environment(row, port, extra=None, metrics_port=None):
    env = {
        **os.environ,
        **SERVER_ENVIRONMENT,
        "PORT": str(port),
        "PGAPPNAME": application_name(row, port),
        **(extra or {}),
    }
    if row in PRESETS:
        env["GUNICORN_PRESET"] = row
        if metrics_port is not None:
            env["METRICS_PORT"] = str(metrics_port)
        return env
    for name in [*OWN_VARIABLES, *(name for name in env if name.startswith("GRANIAN_"))]:
        env.pop(name, None)
    return env


@dataclass
class Server:
    preset: str  # the row: a preset, baseline, stock-<preset> or granian
    port: int
    process: object  # subprocess.Popen of the gunicorn master
    log_path: Path
    metrics_port: int | None = None  # where a preset's master serves /metrics

    @property
    def metrics_url(self):
        if self.metrics_port is None:
            return None
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

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
def running_server(preset, log_path, cpus=None, extra_env=None, sizing=None):
    """Yield a Server for the row `preset` on a free local port once it is ready; stop it after.

    `sizing` (sizing.Sizing): what the stock and granian rows are started with.
    """
    port = free_port()
    metrics_port = free_port() if preset in PRESETS else None
    with (
        open(log_path, "w") as log,
        processes.running(
            command(preset, port, sizing),
            env=environment(preset, port, extra_env, metrics_port),
            cwd=PROJECT_DIR,
            cpus=cpus,
            stdout=log,
            grace=40.0,  # gunicorn's graceful_timeout is 25 s
        ) as process,
    ):
        server = Server(preset, port, process, Path(log_path), metrics_port)
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
