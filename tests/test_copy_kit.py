"""The kit (config/gunicorn/) copied into a project nobody here wrote, following the README.

The foreign project, on Python 3.10 (the kit's oldest): a split settings package
(`library.settings.production` does `from library.settings.base import *`, and the README's
settings lines go into the base), dj-database-url with persistent connections
(conn_max_age=500), its own `gunicorn==22.0.0` pin, and pages that query PostgreSQL; once
with psycopg2, once with psycopg 3. The README's section "Using a preset in an existing
Django project" is followed as written: its install line is read from the README and run,
and the settings lines it shows are the ones written here. Before step 3 the presets that
need a pool refuse to start; after it every preset starts, serves, keeps to the budget, and
answers 503, not 500, when its pool is exhausted. The shapes that went wrong elsewhere are
variants of it: the old gunicorn pin put back, `DEBUG = True` written in the settings, a
PostGIS engine, the middleware line forgotten; each one gives what the README promises, or
one line.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, raw_request
from test_gevent import PeakConnections, get, wrk

pytestmark = pytest.mark.slow

PRESETS = ("sync", "gthread", "gevent", "asgi")
PYTHON = "3.10"  # the oldest the kit supports: config/gunicorn/versions.py
DRIVERS = {"psycopg2": "psycopg2-binary==2.9.13", "psycopg": "psycopg[binary]==3.3.9"}
# What the foreign project ships, before the README's install line: its own gunicorn pin.
OLD_GUNICORN = "gunicorn==22.0.0"
FOREIGN_REQUIREMENTS = ["Django>=5.2.8,<5.3", "dj-database-url>=2.1", OLD_GUNICORN]
SETTINGS = "library.settings.production"
SETTINGS_LINES = (
    "from config.gunicorn.database.settings import pooled",
    "DATABASES = {alias: pooled(database) for alias, database in DATABASES.items()}",
    'MIDDLEWARE.insert(0, "config.gunicorn.database.middleware.DatabaseUnavailableMiddleware")',
)
MIDDLEWARE = "config.gunicorn.database.middleware.DatabaseUnavailableMiddleware"
VIEWS = '''
from django.db import connection
from django.http import JsonResponse


def books(request):
    """A catalogue page: one query that waits in PostgreSQL like a slow one would."""
    ms = int(request.GET.get("ms", "20"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s), count(*) FROM pg_class", [ms / 1000])
        (_, tables) = cursor.fetchone()
    return JsonResponse({"tables": tables})


def places(request):
    """A map page: PostGIS answers through the engine the settings name."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ST_AsText(ST_MakePoint(1, 2))")
        (point,) = cursor.fetchone()
    return JsonResponse({"point": point, "postgis": bool(getattr(connection.ops, "postgis", 0))})
'''


@dataclass
class Foreign:
    path: Path
    venv: Path
    kit_source: object = None  # the installed bake whose config/gunicorn/ was copied

    def bin(self, name):
        return str(self.venv / "bin" / name)


def readme_install_line(project, driver):
    """The README's pip line for `driver`, as a list of requirements."""
    readme = (project.path / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Using a preset in an existing Django project") :]
    lines = re.findall(r"^\s*pip install (.+?)(?:\s+#.*)?$", section, flags=re.MULTILINE)
    (line,) = (line for line in lines if ("psycogreen" in line) == (driver == "psycopg2"))
    return [requirement.strip("'") for requirement in line.split()]


def uv_install(venv, *requirements):
    python = str(venv / "bin" / "python")
    uv = shutil.which("uv")
    subprocess.run([uv, "pip", "install", "--quiet", "--python", python, *requirements], check=True)


@pytest.fixture(scope="module", params=DRIVERS)
def foreign(request, installed_project, tmp_path_factory):
    """The foreign project, with the kit copied in and installed, settings not yet changed."""
    driver = request.param
    project = installed_project()  # the kit to copy comes from the default bake
    uv = shutil.which("uv")
    if subprocess.run([uv, "python", "find", PYTHON], capture_output=True).returncode:
        pytest.skip(
            f"Python {PYTHON}, the kit's oldest, is not installed (uv python find {PYTHON}); "
            "with pyenv, set PYENV_VERSION=3.11.7:3.12.1:3.13.0:3.10.13"
        )
    root = tmp_path_factory.mktemp(f"foreign-{driver}")
    venv = root / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", PYTHON, str(venv)], check=True)
    uv_install(venv, *FOREIGN_REQUIREMENTS, DRIVERS[driver])
    uv_install(venv, *readme_install_line(project, driver))  # step 2
    site = root / "site"
    site.mkdir()
    subprocess.run(
        [str(venv / "bin" / "django-admin"), "startproject", "library", str(site)], check=True
    )
    (site / "library" / "views.py").write_text(VIEWS)
    urls = site / "library" / "urls.py"
    urls.write_text(
        urls.read_text()
        .replace(
            "from django.urls import path", "from django.urls import path\n\nfrom . import views"
        )
        .replace(
            "urlpatterns = [",
            'urlpatterns = [\n    path("books/", views.books),\n    path("places/", views.places),',
        )
    )
    # The common split layout: a settings package, whose base the production module imports.
    package = site / "library" / "settings"
    package.mkdir()
    (package / "__init__.py").write_text("")
    original = site / "library" / "settings.py"
    (package / "base.py").write_text(
        "import os\n\nimport dj_database_url\n\n"
        + original.read_text()
        + '\nSECRET_KEY = os.environ["SECRET_KEY"]\nDEBUG = False\nALLOWED_HOSTS = ["127.0.0.1"]\n'
        + "DATABASES = {'default': dj_database_url.config(conn_max_age=500)}\n"
    )
    original.unlink()
    (package / "production.py").write_text(
        "from library.settings.base import *  # noqa: F403\n\nSESSION_COOKIE_SECURE = True\n"
    )
    shutil.copytree(project.path / "config" / "gunicorn", site / "config" / "gunicorn")  # 1
    return driver, Foreign(site, venv, project), project


def settings_variant(site, name, lines):
    """A settings module beside production.py that imports it and adds `lines`."""
    module = site.path / "library" / "settings" / f"{name}.py"
    module.write_text(f"from {SETTINGS} import *  # noqa: F403\n\n" + "\n".join(lines) + "\n")
    return f"library.settings.{name}"


def follow_step_3(site):
    """The settings lines of the README's step 3, added as they are shown, to the base."""
    settings = site / "library" / "settings" / "base.py"
    settings.write_text(settings.read_text() + "\n" + "\n".join(SETTINGS_LINES) + "\n")


def gunicorn_command(foreign, preset, *options):
    """gunicorn with a preset, as the README's step 4 says: the preset finds library.wsgi (or
    library.asgi) above the split settings package by itself."""
    return [foreign.bin("gunicorn"), "-c", f"config/gunicorn/{preset}.py", *options]


def start(foreign, preset, database_url, *options, **env):
    return subprocess.Popen(
        gunicorn_command(foreign, preset, *options),
        cwd=foreign.path,
        env=environment_for(foreign, database_url, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def environment_for(foreign, database_url, **env):
    """The foreign project's environment: its venv first on PATH, nothing of ours."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "GUNICORN_", "WEB_CONCURRENCY", "DATABASE_"))
        and key != "VIRTUAL_ENV"
    }
    return {
        **clean,
        "PATH": f"{foreign.venv / 'bin'}:{os.environ['PATH']}",
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": database_url,
        **env,
    }


def test_readme_shows_the_settings_lines_written_here(foreign):
    _, _, project = foreign
    readme = (project.path / "README.md").read_text(encoding="utf-8")
    for line in SETTINGS_LINES:
        assert line in readme


@pytest.mark.parametrize("preset", ["gevent", "asgi"])
def test_without_step_3_the_pooled_presets_refuse_to_start(foreign, database_url, preset):
    _, site, _ = foreign
    result = start(site, preset, database_url, PORT=str(free_port()))
    output, _ = result.communicate(timeout=60)
    assert result.returncode == 1, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("Database 'default' has no pool (CONN_MAX_AGE=500): ")
    assert last.endswith("build the entry with pooled() from config/gunicorn/database/settings.py")
    assert "Booting worker" not in output
    assert "Traceback" not in output


def test_djangos_own_pool_is_refused_unless_it_can_run(foreign, database_url):
    """Taken with psycopg 3 and psycopg_pool; without either, refused before any worker."""
    driver, site, _ = foreign
    module = settings_variant(
        site,
        "django_pool",
        [
            "DATABASES['default']['CONN_MAX_AGE'] = 0",
            "DATABASES['default']['OPTIONS'] = {'pool': {'max_size': 20}}",
            SETTINGS_LINES[-1],  # the 503 middleware, which any pool needs
        ],
    )

    def serve():
        server = start(
            site,
            "gevent",
            database_url,
            PORT=str(free_port()),
            DJANGO_SETTINGS_MODULE=module,
        )
        try:
            output, _ = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # serving: stop it
            server.terminate()
            output, _ = server.communicate(timeout=30)
        return server.returncode, output

    try:
        returncode, output = serve()
        assert returncode == 1, output
        refusal = {
            "psycopg2": "Database 'default': Django's pool (OPTIONS['pool']) needs psycopg 3",
            # The README's install line does not bring psycopg_pool: the kit has a pool.
            "psycopg": "Database 'default': Django's pool (OPTIONS['pool']) needs psycopg_pool",
        }[driver]
        assert output.strip().splitlines()[-1].startswith(refusal), output
        if driver == "psycopg":
            uv_install(site.venv, "psycopg-pool")
            returncode, output = serve()
            # A pool of the planned size, as pooled() would make it: taken.
            assert "database: a pool of 20 per worker, 40 at most" in output, output
            assert returncode == 0, output
    finally:
        (site.path / "library" / "settings" / "django_pool.py").unlink()


@pytest.fixture(scope="module")
def configured(foreign):
    """The foreign project after the README's step 3."""
    driver, site, _ = foreign
    follow_step_3(site.path)
    return driver, site


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_serves_the_foreign_project_within_the_budget(
    configured, running_server, database_url, postgres_admin, preset
):
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    _, site = configured
    port = free_port()
    with (
        running_server(
            gunicorn_command(site, preset),
            cwd=site.path,
            env=environment_for(site, database_url, PORT=str(port)),
            port=port,
            ready_path="/books/",
        ) as server,
        PeakConnections(postgres_admin, database_url) as connections,
    ):
        summary, output = wrk(f"{server.url}/books/", connections=50, seconds=3)
        line = server.startup_line()
        # A body: Python 3.10 has no asyncio.timeout, which the asgi guard read one with (a 500).
        with_body = b"POST /books/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\n"
        status, head = raw_request(port, with_body, [b"hello"])
    assert summary["requests"] > 50, output
    assert "non-2xx" not in summary, output
    assert 0 < connections.peak <= 40
    assert status is not None and status < 500, head
    assert f"Preset {preset}: " in line
    if preset in ("gevent", "asgi"):
        assert "database: a pool of 20 per worker, 40 at most; budget 40" in line, line
    assert server.returncode == 0, server.log
    assert "Traceback" not in server.log


def test_an_exhausted_pool_is_a_503_not_a_500(configured, running_server, database_url):
    _, site = configured
    port = free_port()
    with (
        running_server(
            gunicorn_command(site, "gevent"),
            cwd=site.path,
            env=environment_for(
                site,
                database_url,
                PORT=str(port),
                WEB_CONCURRENCY="1",
                DATABASE_CONNECTION_BUDGET="2",
                DJANGO_DB_POOL_TIMEOUT="1",
            ),
            port=port,
            ready_path="/books/?ms=0",
        ) as server,
        ThreadPoolExecutor(20) as pool,
    ):
        answers = list(pool.map(get, [f"{server.url}/books/?ms=2000"] * 20))
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [200, 200] + [503] * 18, statuses
    assert "Traceback" not in server.log
    assert "PoolTimeout" not in server.log


def refusal(site, preset, database_url, *options, settings=SETTINGS, **env):
    """(exit status, output) of a preset expected to stop before serving."""
    server = start(
        site,
        preset,
        database_url,
        *options,
        PORT=str(free_port()),
        DJANGO_SETTINGS_MODULE=settings,
        **env,
    )
    try:
        output, _ = server.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # serving after all: stop it, and let the test say so
        server.terminate()
        output, _ = server.communicate(timeout=30)
    return server.returncode, output


def test_a_pin_that_puts_an_older_gunicorn_back_is_refused_in_one_line(configured, database_url):
    """The project's own `gunicorn==22.0.0`, installed again after step 2."""
    driver, site = configured
    uv_install(site.venv, OLD_GUNICORN)
    try:
        for preset in PRESETS:
            returncode, output = refusal(site, preset, database_url)
            assert returncode == 1, output
            assert output.strip().splitlines()[-1] == (
                "gunicorn 22.0.0 is installed and the kit needs 27.0.1 or later (its workers "
                "drain on SIGTERM and serve asgi with gunicorn 27's API): pip install "
                "'gunicorn[gevent]>=27.0.1,<28', and raise the version your requirements pin"
            ), output
            assert "Traceback" not in output
            assert "Booting worker" not in output
    finally:
        uv_install(site.venv, *readme_install_line(site.kit_source, driver))  # step 2 again


def test_a_forgotten_middleware_line_is_refused_where_a_pool_is_planned(configured, database_url):
    _, site = configured
    module = settings_variant(
        site, "no_middleware", [f"MIDDLEWARE = [m for m in MIDDLEWARE if m != {MIDDLEWARE!r}]"]
    )
    for preset in ("gevent", "asgi"):
        returncode, output = refusal(site, preset, database_url, settings=module)
        assert returncode == 1, output
        last = output.strip().splitlines()[-1]
        assert last.startswith(f"MIDDLEWARE has no {MIDDLEWARE}: the {preset} preset plans"), last
        assert "500 with no Retry-After" in last
        assert "Traceback" not in output


def test_debug_written_in_the_settings_is_named_as_what_is_seen(
    configured, running_server, database_url
):
    """`DEBUG = True` in the settings: DJANGO_DEBUG=false changes nothing, the line says so."""
    _, site = configured
    module = settings_variant(site, "debug", ["DEBUG = True"])
    returncode, output = refusal(
        site, "gthread", database_url, settings=module, DJANGO_DEBUG="false"
    )
    assert returncode == 1, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("settings.DEBUG is True and gunicorn listens on 0.0.0.0:"), last
    assert "bind to 127.0.0.1 (--bind 127.0.0.1:PORT)" in last
    # On this host only it serves, and says so once.
    port = free_port()
    with running_server(
        gunicorn_command(site, "gthread", "--bind", f"127.0.0.1:{port}"),
        cwd=site.path,
        env=environment_for(site, database_url, PORT=str(port), DJANGO_SETTINGS_MODULE=module),
        port=port,
        ready_path="/books/?ms=0",
    ) as server:
        assert server.get("/books/?ms=0")[0] == 200
    warnings = [line for line in server.log.splitlines() if "settings.DEBUG is True" in line]
    assert len(warnings) == 1, server.log
    assert f"served on 127.0.0.1:{port}" in warnings[0]


@pytest.fixture
def postgis_url(database_url, postgres_admin):
    """The test database with PostGIS, as a postgis:// URL (dj-database-url's engine name)."""
    (available,) = postgres_admin.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'"
    ).fetchone()
    if not available:
        pytest.skip("PostGIS is not installed: apt-get install postgresql-15-postgis-3")
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION postgis")
    return "postgis" + database_url[database_url.index(":") :]


def test_a_postgis_engine_is_pooled_and_keeps_postgis(configured, running_server, postgis_url):
    _, site = configured
    port = free_port()
    with running_server(
        gunicorn_command(site, "gevent"),
        cwd=site.path,
        env=environment_for(site, postgis_url, PORT=str(port)),
        port=port,
        ready_path="/places/",
    ) as server:
        status, _, body = server.get("/places/")
        line = server.startup_line()
    assert status == 200, server.log
    assert json.loads(body) == {"point": "POINT(1 2)", "postgis": True}
    assert "database: a pool of 20 per worker, 40 at most; budget 40" in line, line
    assert server.returncode == 0, server.log
    assert "Traceback" not in server.log
