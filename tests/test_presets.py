"""The gunicorn presets as real processes: boot, serve, size, refuse bad values, stop.

Everything runs in the default project, installed once (conftest's `installed_project`),
against the local PostgreSQL, each server on a free port.
"""

import re
import secrets
import shutil
import subprocess
import time

import pytest
from conftest import free_port, raw_request

pytestmark = pytest.mark.slow

PRESETS = ("sync", "gthread", "gevent", "asgi")


@pytest.fixture(scope="module")
def project(installed_project):
    """The default project, its static files collected as the Dockerfile does."""
    project = installed_project()
    collected = run(project, project.bin("python"), "manage.py", "collectstatic", "--noinput")
    assert collected.returncode == 0, collected.stdout + collected.stderr
    return project


def environment(project, **overrides):
    """The project's environment (conftest keeps the shell's out) with production settings."""
    production = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_DEBUG": "false"}
    return project.environment(**{**production, **overrides})


def run(project, *args, timeout=120, **env):
    return subprocess.run(
        args,
        cwd=project.path,
        env=environment(project, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def launcher(project):
    return [project.bin("python"), "-m", "config.gunicorn"]


def preset_file(project, preset):
    return [project.bin("gunicorn"), "-c", f"config/gunicorn/{preset}.py"]


def serve(running_server, project, args, **env):
    port = free_port()
    return running_server(
        args, cwd=project.path, env=environment(project, PORT=str(port), **env), port=port
    )


def wait_for_workers(server, expected, timeout=15):
    """The master's children once their number is `expected` (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while len(server.workers()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return server.workers()


@pytest.mark.parametrize("preset", PRESETS)
def test_check_config_passes(project, preset):
    result = run(project, *preset_file(project, preset), "--check-config")
    assert result.returncode == 0, result.stdout + result.stderr


def open_connections(postgres_admin, database_url, expected, timeout=5):
    """Connections to the test database once there are `expected` (or after `timeout`)."""
    name = database_url.rsplit("/", 1)[1]
    deadline = time.monotonic() + timeout
    while True:
        (count,) = postgres_admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]
        ).fetchone()
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


# Connections left open after one request to the database: the thread's persistent one
# (CONN_MAX_AGE) under sync and gthread, the one back in the worker's pool under gevent and
# asgi. (/readyz opens a connection of its own and closes it.)
KEPT_CONNECTIONS = {"sync": 1, "gthread": 1, "gevent": 1, "asgi": 1}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_serves_probes_and_static_files_then_stops_cleanly(
    project, running_server, database_url, postgres_admin, preset
):
    with serve(
        running_server,
        project,
        launcher(project),
        GUNICORN_PRESET=preset,
        DATABASE_URL=database_url,
        DJANGO_DEMO_ENDPOINTS="true",
    ) as server:
        assert server.get("/healthz")[0] == 200
        assert server.get("/readyz")[0] == 200
        assert open_connections(postgres_admin, database_url, 0) == 0
        assert server.get("/demo/db?ms=1")[0] == 200
        kept = KEPT_CONNECTIONS[preset]
        assert open_connections(postgres_admin, database_url, kept) == kept
        # From a trusted proxy (127.0.0.1), X-Forwarded-Proto makes the request secure: no
        # redirect to HTTPS, and WhiteNoise serves the admin's CSS.
        status, headers, body = server.get(
            "/static/admin/css/base.css", headers={"X-Forwarded-Proto": "https"}
        )
        assert status == 200, server.log
        assert headers["Content-Type"].startswith("text/css")
        assert b"body" in body
        line = server.startup_line()
    assert server.returncode == 0, server.log
    assert server.stop_seconds < 15
    assert f"Using worker: config.gunicorn.workers.{preset}." in server.log
    assert f"Preset {preset}: " in line
    assert re.search(r"; CPU budget \d+ \(", line), line
    log = server.log
    if preset == "asgi":
        # Known, and in the preset's docstring: WhiteNoise's responses are sync iterators.
        log = log.replace("Warning: StreamingHttpResponse must consume synchronous iterators", "")
    for problem in ("Traceback", "[ERROR]", "[WARNING]", "[CRITICAL]", "Warning:"):
        assert problem not in log, server.log
    assert "Shutting down: Master" in server.log


def test_sync_on_one_cpu_forks_three_workers(project, running_server):
    taskset = shutil.which("taskset")
    if taskset is None:
        pytest.skip("taskset is not installed (util-linux)")
    args = [taskset, "-c", "0", *launcher(project)]
    with serve(running_server, project, args, GUNICORN_PRESET="sync") as server:
        workers = wait_for_workers(server, 3)
        time.sleep(1)  # and no more arrive
        assert len(server.workers()) == len(workers) == 3, server.log
        line = server.startup_line()
    assert "3 workers (2 x CPUs + 1)" in line
    assert "CPU budget 1 (CPU affinity)" in line
    assert server.returncode == 0, server.log


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {"WEB_CONCURRENCY": "2"}, r"2 workers \(WEB_CONCURRENCY\)"),
        (["--workers", "2"], {}, r"2 workers \(gunicorn option\)"),
        ([], {"GUNICORN_CMD_ARGS": "--workers 2"}, r"2 workers \(gunicorn option\)"),
        (
            [],
            {"GUNICORN_MAX_WORKERS": "2"},
            r"2 workers \(2 x CPUs \+ 1 = \d+, capped by GUNICORN_MAX_WORKERS\)",
        ),
    ],
    ids=["WEB_CONCURRENCY", "command line", "GUNICORN_CMD_ARGS", "GUNICORN_MAX_WORKERS"],
)
def test_workers_can_be_set_or_capped(project, running_server, args, env, expected):
    # The sync preset alone would start 2 x CPUs + 1 >= 3 workers.
    command = [*preset_file(project, "sync"), *args]
    with serve(running_server, project, command, **env) as server:
        workers = wait_for_workers(server, 2)
        time.sleep(1)
        assert len(server.workers()) == len(workers) == 2, server.log
        line = server.startup_line()
    assert re.search(expected, line), line
    assert server.returncode == 0, server.log


def test_gunicorn_options_override_the_preset(project, running_server):
    args = [*launcher(project), "--threads", "3", "--keep-alive", "5", "--timeout", "7"]
    with serve(
        running_server, project, args, GUNICORN_PRESET="gthread", GUNICORN_THREADS="6"
    ) as server:
        line = server.startup_line()
    assert "3 threads" in line
    assert "keep-alive 5 s" in line
    assert "timeout 7 s" in line


BAD_NUMBERS = {
    "PORT": "use 1 to 65535",
    "WEB_CONCURRENCY": "use 1 or more",  # a platform's value: capped, never refused above
    "GUNICORN_MAX_WORKERS": "use 1 to 256",
    "GUNICORN_THREADS": "use 1 to 64",
    "GUNICORN_WORKER_CONNECTIONS": "use 1 to 10000",
    "GUNICORN_TIMEOUT": "use 1 to 3600",
}
BAD_VALUES = [
    (name, value, f"{name}={value!r} {problem}: {allowed}")
    for name, allowed in BAD_NUMBERS.items()
    for value, problem in (
        ("abc", "is not a whole number"),
        ("0", "is out of range"),
        ("-3", "is out of range"),
        ("1000000", "is out of range"),
    )
    if (name, value) != ("WEB_CONCURRENCY", "1000000")
] + [
    (
        "FORWARDED_ALLOW_IPS",
        "10.0.0.300",
        "FORWARDED_ALLOW_IPS='10.0.0.300' is not a list of IP addresses or networks: "
        "use e.g. 10.0.0.0/8,127.0.0.1, or * to trust any client",
    ),
]


def assert_one_line(result, expected):
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == expected
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("name", "value", "expected"), BAD_VALUES)
def test_bad_value_stops_the_launcher_with_one_line(project, name, value, expected):
    result = run(project, *launcher(project), timeout=30, **{name: value})
    assert_one_line(result, expected)


# Upstream limits: gunicorn checks these itself, before it reads any config file, so
# `gunicorn -c` answers with gunicorn's words. The launcher is the way around them.
GUNICORN_OWN_ANSWERS = {
    ("WEB_CONCURRENCY", "abc"): "ValueError: invalid literal for int() with base 10: 'abc'",
    ("WEB_CONCURRENCY", "-3"): "Error: Value must be positive: -3",
    ("FORWARDED_ALLOW_IPS", "10.0.0.300"): (
        "Error: '10.0.0.300' does not appear to be an IPv4 or IPv6 network"
    ),
}


@pytest.mark.parametrize(("name", "value", "expected"), BAD_VALUES)
def test_bad_value_stops_gunicorn_with_one_line(project, name, value, expected):
    result = run(project, *preset_file(project, "gthread"), timeout=30, **{name: value})
    if (name, value) == ("WEB_CONCURRENCY", "abc"):
        assert result.returncode == 1
        assert result.stderr.strip().endswith(GUNICORN_OWN_ANSWERS[name, value])
        assert "Traceback" in result.stderr
    else:
        assert_one_line(result, GUNICORN_OWN_ANSWERS.get((name, value), expected))


def test_unknown_preset_is_refused_with_the_choices(project):
    result = run(project, *launcher(project), GUNICORN_PRESET="eventlet")
    assert_one_line(
        result,
        "GUNICORN_PRESET='eventlet' is not a preset (gunicorn 26 removed the eventlet worker): "
        "use sync, gthread, gevent, asgi",
    )


@pytest.mark.parametrize("command", ["launcher", "preset file"])
def test_bad_django_settings_stop_the_master_before_any_worker(project, command):
    args = launcher(project) if command == "launcher" else preset_file(project, "gevent")
    result = run(project, *args, DJANGO_SECRET_KEY="")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: DJANGO_SECRET_KEY is not set")
    assert "Booting worker" not in result.stdout + result.stderr


def exchange(server, request):
    """Send raw bytes to `server`; its answer's head (status line and headers)."""
    return raw_request(int(server.url.rsplit(":", 1)[1]), request)[1]


@pytest.mark.parametrize("preset", PRESETS)
def test_a_large_body_is_refused_before_it_is_read(project, running_server, preset):
    with serve(running_server, project, launcher(project), GUNICORN_PRESET=preset) as server:
        started = time.monotonic()
        head = exchange(
            server,
            b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n"
            + b"x"
            * 65536,  # 64 KB of the 50 MB promised: the answer must not wait for more
        )
        elapsed = time.monotonic() - started
        assert head.startswith("HTTP/1.1 413 "), head
        assert elapsed < 5
        # 10 MiB by default; the same body under the limit reaches Django (no CSRF token: 403).
        limited = {"GUNICORN_MAX_REQUEST_BODY": "100"}
    with serve(
        running_server, project, launcher(project), GUNICORN_PRESET=preset, **limited
    ) as server:
        refused = exchange(
            server,
            b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 101\r\n\r\n",
        )
        assert refused.startswith("HTTP/1.1 413 "), refused
        served = exchange(
            server,
            b"POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"X-Forwarded-Proto: https\r\nContent-Length: 100\r\n\r\n" + b"x" * 100,
        )
        assert served.startswith("HTTP/1.1 403 "), served


@pytest.mark.parametrize("preset", PRESETS)
def test_an_absolute_form_request_line_redirects_to_this_host(project, running_server, preset):
    env = {"GUNICORN_PRESET": preset, "DJANGO_SECURE_SSL_REDIRECT": "true"}
    with serve(running_server, project, launcher(project), **env) as server:
        head = exchange(
            server,
            b"GET http://evil.example/admin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: close\r\n\r\n",
        )
    assert head.startswith("HTTP/1.1 301 "), head
    location = re.search(r"(?im)^location: (.*)$", head).group(1).strip()
    assert location == "https://127.0.0.1/admin", head  # not https://127.0.0.1http://evil...


DEBUG_REFUSAL = (
    "settings.DEBUG is True and gunicorn listens on 0.0.0.0:{port}: Django's debug pages would "
    "show the settings to anyone; turn DEBUG off in the settings (DJANGO_DEBUG=false where "
    "they read it), bind to 127.0.0.1 (--bind 127.0.0.1:PORT), or set GUNICORN_ALLOW_DEBUG=true"
)


@pytest.mark.parametrize("preset", PRESETS)
def test_debug_on_the_network_is_refused_before_any_worker(project, preset):
    port = free_port()
    result = run(
        project, *launcher(project), GUNICORN_PRESET=preset, DJANGO_DEBUG="true", PORT=str(port)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == DEBUG_REFUSAL.format(port=port)
    assert "Booting worker" not in result.stdout + result.stderr


def test_debug_is_served_on_loopback_or_on_purpose(project, running_server):
    port = free_port()
    with running_server(
        [*launcher(project), "--bind", f"127.0.0.1:{port}"],
        cwd=project.path,
        env=environment(project, DJANGO_DEBUG="true"),
        port=port,
    ) as server:
        assert server.get("/healthz")[0] == 200
    with serve(
        running_server, project, launcher(project), DJANGO_DEBUG="true", GUNICORN_ALLOW_DEBUG="true"
    ) as server:
        assert server.get("/healthz")[0] == 200


def test_start_up_warns_once_about_any_host_and_a_weak_secret_key(project, running_server):
    with serve(
        running_server,
        project,
        launcher(project),
        DJANGO_ALLOWED_HOSTS="*",
        DJANGO_SECRET_KEY="changeme",
    ) as server:
        assert server.get("/healthz")[0] == 200
    warnings = [line for line in server.log.splitlines() if "[WARNING]" in line]
    assert len(warnings) == 2, server.log
    assert "DJANGO_ALLOWED_HOSTS accepts any host (*)" in warnings[0]
    assert "DJANGO_SECRET_KEY is short or well known" in warnings[1]


def test_control_socket_is_off_unless_a_path_is_given(project, running_server, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with serve(running_server, project, launcher(project), HOME=str(home)) as server:
        pass
    assert not (home / ".gunicorn").exists()
    assert "Control socket" not in server.log

    socket_path = tmp_path / "gunicorn.ctl"
    with serve(
        running_server, project, launcher(project), GUNICORN_CONTROL_SOCKET=str(socket_path)
    ) as server:
        deadline = time.monotonic() + 10
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert socket_path.is_socket(), server.log
    assert f"Control socket listening at {socket_path}" in server.log


def test_healthcheck_module(project, running_server):
    # It asks /livez of the metrics server (config/gunicorn/observability/), on METRICS_PORT.
    metrics = str(free_port())
    healthcheck = (project.bin("python"), "-m", "config.gunicorn.healthcheck")
    down = run(project, *healthcheck, METRICS_PORT=metrics)
    assert down.returncode == 1
    assert down.stderr.strip().startswith(f"unhealthy: http://127.0.0.1:{metrics}/livez: ")
    with serve(running_server, project, launcher(project), METRICS_PORT=metrics):
        up = run(project, *healthcheck, METRICS_PORT=metrics)
        assert up.returncode == 0, up.stderr


def test_the_kit_serves_a_bare_django_project(project, running_server, tmp_path):
    """config/gunicorn/ copied into `startproject`'s output, nothing else changed."""
    site = tmp_path / "mysite"
    site.mkdir()
    started = run(project, project.bin("django-admin"), "startproject", "mysite", str(site))
    assert started.returncode == 0, started.stderr
    shutil.copytree(project.path / "config" / "gunicorn", site / "config" / "gunicorn")

    port = free_port()
    with running_server(
        # startproject's settings have DEBUG = True: the presets serve that on loopback only.
        [project.bin("gunicorn"), "-c", "config/gunicorn/gthread.py", "-b", f"127.0.0.1:{port}"],
        cwd=site,
        env=environment(project, PORT=str(port), DJANGO_SETTINGS_MODULE="mysite.settings"),
        port=port,
        ready_path="/admin/login/",  # a bare project has no probes: its one page
    ) as server:
        status, _, body = server.get("/admin/login/")
        assert status == 200, server.log
        assert b"Django administration" in body
        line = server.startup_line()
    assert "Preset gthread: " in line
    assert line.endswith("database: not PostgreSQL, no budget to keep"), line
    assert server.returncode == 0, server.log
    assert "Traceback" not in server.log


def test_start_up_line_names_every_sizing_input(project, running_server):
    with serve(
        running_server,
        project,
        launcher(project),
        GUNICORN_PRESET="gevent",
        GUNICORN_WORKER_CONNECTIONS="50",
        GUNICORN_TIMEOUT="45",
    ) as server:
        line = server.startup_line()
    assert re.search(
        r"Preset gevent: \d+ workers \(CPUs\), 50 connections each; keep-alive 75 s; "
        r"timeout 45 s; CPU budget \d+ \(",
        line,
    ), line
