"""Fixtures shared by the template's tests: baking, installing, PostgreSQL."""

import json
import os
import runpy
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "TEMPLATE_TESTS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# What the generated project's settings, presets and sessions read: the list its own tests'
# plugin keeps (running it clears them, but for DATABASE_URL). The tests set what they mean
# to; none of it may come from the shell that runs them (DJANGO_ALLOWED_HOSTS=* there failed
# a generated project's test), so all of it leaves the environment of every process here.
CLEAN_ENVIRONMENT = TEMPLATE_DIR / "{{cookiecutter.project_slug}}/tests/clean_environment.py"
PROJECT_VARIABLES = runpy.run_path(str(CLEAN_ENVIRONMENT))["READ_BY_THE_PROJECT"]
for name in [name for name in os.environ if name.startswith(PROJECT_VARIABLES)]:
    del os.environ[name]
# The tests send Ctrl-C's SIGINT to what they start. A shell that runs them in the background
# (`.ci/run &`) ignores SIGINT, and an ignored signal stays ignored in every child: a handler
# here makes the children start with the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# `nox -s tests` runs two pytest-xdist workers (--dist loadfile: each module whole on one of
# them, its bakes, installs and module fixtures made once). The modules that time real load
# (latencies under saturation, deadlines, a loop blocked for 0.1 s) run one after another,
# as one unit on one worker; every other module runs on the other. Two of those at once, with
# a CPU-bound loop on one core besides, failed where one at a time passed. Seconds each in one
# process on 2 CPUs (a clean clone's run, 33 min in all): 345, 320, 263, 198, 99.
TIMED_MODULES = (
    "test_resilience",
    "test_hostile_clients",
    "test_loadtest",
    "test_observability",
    "test_gevent",
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadFileScheduling

    class TimedInTurn(LoadFileScheduling):
        # LoadFileScheduling's own way to say which tests go together: a file, here the
        # timed modules as one.
        def _split_scope(self, nodeid):
            module = super()._split_scope(nodeid)
            return "timed" if Path(module).stem in TIMED_MODULES else module

    if config.getvalue("dist") == "loadfile":
        return TimedInTurn(config, log)
    return None


def bake(output_dir, **answers):
    """Bake the template with `answers` over the defaults; return the project folder."""
    project = cookiecutter(
        str(TEMPLATE_DIR), no_input=True, extra_context=answers, output_dir=str(output_dir)
    )
    return Path(project)


@pytest.fixture(scope="session", autouse=True)
def private_cookiecutter_config(tmp_path_factory):
    """Bake with cookiecutter's defaults: no ~/.cookiecutterrc answers, no replay files in ~."""
    home = tmp_path_factory.mktemp("cookiecutter-home")
    config = home / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {json.dumps(str(home / 'cookiecutters'))}\n"
        f"replay_dir: {json.dumps(str(home / 'replay'))}\n",
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COOKIECUTTER_CONFIG", str(config))
        yield


@dataclass(frozen=True)
class InstalledProject:
    """A baked project installed (`pip install -e '.[dev]'`) into its own virtualenv."""

    path: Path
    venv: Path

    def bin(self, name):
        return str(self.venv / "bin" / name)

    def environment(self, **overrides):
        """This process's environment, the venv first on PATH, with `overrides`."""
        env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
        env.update(overrides)
        return env

    def run(self, *args, env=None, timeout=300, check=False):
        """Run a command from the project folder with the venv's tools first on PATH."""
        full_env = self.environment(**(env or {}))
        return subprocess.run(
            args,
            cwd=self.path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )


@pytest.fixture(scope="session")
def installed_project(tmp_path_factory):
    """Factory: bake with `answers` and install; one virtualenv per distinct set of answers."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed: run the tests through `nox -s tests`")
    cache = {}

    def install(**answers):
        key = tuple(sorted(answers.items()))
        if key not in cache:
            workdir = tmp_path_factory.mktemp("installed")
            project = bake(workdir, **answers)
            venv = workdir / "venv"
            python = answers.get("python_version", "3.11")
            subprocess.run([uv, "venv", "--quiet", "--python", python, str(venv)], check=True)
            subprocess.run(
                [
                    uv,
                    "pip",
                    "install",
                    "--quiet",
                    "--python",
                    str(venv / "bin" / "python"),
                    "-e",
                    f"{project}[dev]",
                ],
                check=True,
            )
            cache[key] = InstalledProject(path=project, venv=venv)
        return cache[key]

    return install


@pytest.fixture(scope="session")
def postgres_admin():
    """An autocommit connection to the local PostgreSQL server, or a skip that says why."""
    try:
        connection = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc}); "
            "start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start"
        )
    with connection:
        yield connection


@pytest.fixture
def database_url(postgres_admin):
    """A fresh, empty database for one test, dropped afterwards."""
    yield from fresh_database(postgres_admin)


@pytest.fixture(scope="module")
def module_database(postgres_admin):
    """A fresh, empty database shared by one module's tests, dropped afterwards."""
    yield from fresh_database(postgres_admin)


def fresh_database(postgres_admin):
    """Create a database, yield its URL, drop it (connections and all)."""
    name = f"tpl_{uuid.uuid4().hex[:12]}"
    postgres_admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    postgres_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def raw_request(port, head, chunks=()):
    """Send `head` (and `chunks` of body); return (status, response head) once it arrives."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before the whole body: the answer is what counts
        response = b""
        while b"\r\n\r\n" not in response:
            data = sock.recv(65536)
            if not data:
                break
            response += data
    response_head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status = int(response_head.split(" ", 2)[1]) if response_head else None
    return status, response_head


def free_port():
    """A TCP port nothing listens on now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_pids(pid):
    """The processes whose parent is `pid`, from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


@dataclass
class RunningServer:
    """A server process started by `running_server`; `returncode` is set once it stopped."""

    process: subprocess.Popen
    url: str
    log_path: Path
    returncode: int | None = None
    stop_seconds: float | None = None

    @property
    def log(self):
        return self.log_path.read_text(errors="replace")

    def workers(self):
        return child_pids(self.process.pid)

    def startup_line(self):
        """The one line in which the master logs the preset's effective configuration."""
        log = self.log
        lines = [line for line in log.splitlines() if "] Preset " in line]
        assert len(lines) == 1, log
        return lines[0]

    def get(self, path, headers=None, timeout=10):
        """(status, headers, body) of a GET, error statuses included."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()


@pytest.fixture
def running_server(tmp_path):
    """Context manager factory: run `args` in `cwd` until `ready_path` answers 200 on `port`.

    Yields a RunningServer; on exit sends SIGTERM and waits up to `stop_timeout`
    seconds, recording the exit status (None if it had to be killed) and how long
    the shutdown took.
    """

    @contextmanager
    def start(args, *, cwd, env, port, ready_path="/healthz", ready_timeout=60, stop_timeout=30):
        log_path = tmp_path / f"server-{port}.log"
        with log_path.open("w") as log:
            # A session of its own: on timeout its whole process group (workers too) is killed.
            process = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = RunningServer(process, f"http://127.0.0.1:{port}", log_path)
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if process.poll() is not None:
                    pytest.fail(f"server exited with {process.returncode}:\n{server.log}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{ready_path} did not answer in {ready_timeout} s:\n{server.log}")
                try:
                    if server.get(ready_path, timeout=1)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            yield server
        finally:
            if process.poll() is None:
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                try:
                    server.returncode = process.wait(timeout=stop_timeout)
                    server.stop_seconds = time.monotonic() - started
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            else:
                server.returncode = process.returncode

    return start
