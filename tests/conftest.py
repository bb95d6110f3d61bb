"""Fixtures shared by the template's tests: baking, installing, PostgreSQL."""

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get(
    "TEMPLATE_TESTS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def bake(output_dir, **answers):
    """Bake the template with `answers` over the defaults; return the project folder."""
    project = cookiecutter(
        str(TEMPLATE_DIR), no_input=True, extra_context=answers, output_dir=str(output_dir)
    )
    return Path(project)


@dataclass(frozen=True)
class InstalledProject:
    """A baked project installed (`pip install -e '.[dev]'`) into its own virtualenv."""

    path: Path
    venv: Path

    def bin(self, name):
        return str(self.venv / "bin" / name)

    def run(self, *args, env=None, timeout=300, check=False):
        """Run a command from the project folder with the venv's tools first on PATH."""
        full_env = {**os.environ, "PATH": f"{self.venv / 'bin'}:{os.environ['PATH']}"}
        full_env.pop("VIRTUAL_ENV", None)
        full_env.update(env or {})
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
                [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                 "-e", f"{project}[dev]"],
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
    name = f"tpl_{uuid.uuid4().hex[:12]}"
    postgres_admin.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    postgres_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
