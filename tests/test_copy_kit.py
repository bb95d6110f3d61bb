"""The kit (config/gunicorn/) copied into a project nobody here wrote, following the README.

The foreign project: a settings package named `library`, dj-database-url with persistent
connections (conn_max_age=500), gunicorn 22, and pages that query PostgreSQL; once with
psycopg2, once with psycopg 3. The README's section "Using a preset in an existing Django
project" is followed as written: its install line is read from the README and run, and the
settings lines it shows are the ones written here. Before step 3 the presets that need a
pool refuse to start; after it every preset starts, serves, keeps to the budget, and
answers 503, not 500, when its pool is exhausted.
"""

import os
import re
import secrets
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port
from test_gevent import PeakConnections, get, wrk

pytestmark = pytest.mark.slow

PRESETS = ("sync", "gthread", "gevent", "asgi")
DRIVERS = {"psycopg2": "psycopg2-binary==2.9.13", "psycopg": "psycopg[binary]==3.3.9"}
# What the foreign project ships, before the README's install line.
FOREIGN_REQUIREMENTS = ["Django>=5.2,<5.3", "dj-database-url>=2.1", "gunicorn==22.0.0"]
SETTINGS_LINES = (
    "from config.gunicorn.database.settings import pooled",
    'DATABASES = {"default": pooled(dj_database_url.config(conn_max_age=600))}',
    'MIDDLEWARE.insert(0, "config.gunicorn.database.middleware.DatabaseUnavailableMiddleware")',
)
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
'''


@dataclass
class Foreign:
    path: Path
    venv: Path

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
    root = tmp_path_factory.mktemp(f"foreign-{driver}")
    venv = root / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", "3.11", str(venv)], check=True)
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
        .replace("urlpatterns = [", 'urlpatterns = [\n    path("books/", views.books),')
    )
    settings = site / "library" / "settings.py"
    settings.write_text(
        "import os\n\nimport dj_database_url\n\n"
        + settings.read_text()
        + '\nSECRET_KEY = os.environ["SECRET_KEY"]\nDEBUG = False\nALLOWED_HOSTS = ["127.0.0.1"]\n'
        + "DATABASES = {'default': dj_database_url.config(conn_max_age=500)}\n"
    )
    shutil.copytree(project.path / "config" / "gunicorn", site / "config" / "gunicorn")  # 1
    return driver, Foreign(site, venv), project


def follow_step_3(site):
    """The settings lines of the README's step 3, added as they are shown."""
    settings = site / "library" / "settings.py"
    settings.write_text(settings.read_text() + "\n" + "\n".join(SETTINGS_LINES) + "\n")


def start(foreign, preset, database_url, **env):
    return subprocess.Popen(
        [foreign.bin("gunicorn"), "-c", f"config/gunicorn/{preset}.py"],
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
        "DJANGO_SETTINGS_MODULE": "library.settings",
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
    settings = site.path / "library" / "django_pool.py"
    settings.write_text(
        "from library.settings import *  # noqa: F403\n"
        "DATABASES['default']['CONN_MAX_AGE'] = 0\n"
        "DATABASES['default']['OPTIONS'] = {'pool': {'max_size': 20}}\n"
    )

    def serve():
        server = start(
            site,
            "gevent",
            database_url,
            PORT=str(free_port()),
            DJANGO_SETTINGS_MODULE="library.django_pool",
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
        settings.unlink()


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
            [site.bin("gunicorn"), "-c", f"config/gunicorn/{preset}.py"],
            cwd=site.path,
            env=environment_for(site, database_url, PORT=str(port)),
            port=port,
            ready_path="/books/",
        ) as server,
        PeakConnections(postgres_admin, database_url) as connections,
    ):
        summary, output = wrk(f"{server.url}/books/", connections=50, seconds=3)
        line = server.startup_line()
    assert summary["requests"] > 50, output
    assert "non-2xx" not in summary, output
    assert 0 < connections.peak <= 40
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
            [site.bin("gunicorn"), "-c", "config/gunicorn/gevent.py"],
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
